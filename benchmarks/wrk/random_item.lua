-- One request shape with a random item per request, for wrk:
--
--   wrk -s random_item.lua URL -- PATH ITEMS [METHOD] [BODY]
--
-- Every "{item}" in PATH and BODY becomes an item id drawn uniformly from IT-0000001 ..
-- IT-<ITEMS> (the ids `mlws demo` writes). A PATH without "{item}" sends the same request every
-- time. Each thread seeds its generator with its own number, so every server under test gets the
-- same sequence of items. Headers given to wrk with --header go with every request.

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
  path = args[1]
  items = tonumber(args[2])
  method = args[3] or "GET"
  body = args[4]
  headers = copy(wrk.headers)
  if body then
    headers["Content-Type"] = "text/plain"
  end
  math.randomseed(thread_number)
end

function request()
  local item = string.format("IT-%07d", math.random(1, items))
  local item_path = path:gsub("{item}", item)
  local item_body = body and body:gsub("{item}", item)
  return wrk.format(method, item_path, headers, item_body)
end
