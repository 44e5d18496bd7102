-- Conditional GETs that a server holding the same data version answers 304 Not Modified:
--
--   wrk -s revalidate.lua URL -- SAMPLE
--
-- SAMPLE is a file of "path<TAB>etag" lines, one per item, fetched by the harness before the run.
-- Each request picks a line at random and sends its ETag in If-None-Match. Each thread seeds its
-- generator with its own number, as random_item.lua does. Headers given to wrk with --header go
-- with every request.

local threads = 0

local function copy(headers)
  local copied = {}
  for name, value in pairs(headers) do
    copied[name] = value
  end
  return copied
end

function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

function init(args)
  requests = {}
  for line in io.lines(args[1]) do
    local path, etag = line:match("^([^\t]+)\t(.+)$")
    if path then
      local headers = copy(wrk.headers)
      headers["If-None-Match"] = etag
      requests[#requests + 1] = wrk.format("GET", path, headers)
    end
  end
  if #requests == 0 then
    error("no path<TAB>etag lines in " .. args[1])
  end
  math.randomseed(thread_number)
end

function request()
  return requests[math.random(1, #requests)]
end
