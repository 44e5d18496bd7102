-- One item's date range per request, item and window drawn at random, for wrk:
--
--   wrk -s random_range.lua URL -- PATH ITEMS DATES SPAN
--
-- DATES is a file of the series' dates (YYYY-MM-DD), one a line and in order, written by the
-- harness. Each request draws an item id from IT-0000001 .. IT-<ITEMS> (the ids `mlws demo`
-- writes) and a window of SPAN consecutive dates, and puts them in place of "{item}", "{from}"
-- (the window's first date) and "{to}" (its last) in PATH. Each thread seeds its generator with
-- its own number, as random_item.lua does. Headers given to wrk with --header go with every
-- request.

local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

function init(args)
  path = args[1]
  items = tonumber(args[2])
  dates = {}
  for line in io.lines(args[3]) do
    if line ~= "" then
      dates[#dates + 1] = line
    end
  end
  span = tonumber(args[4])
  if #dates < span then
    error(#dates .. " dates in " .. args[3] .. ", fewer than a window of " .. span)
  end
  math.randomseed(thread_number)
end

function request()
  local item = string.format("IT-%07d", math.random(1, items))
  local first = math.random(1, #dates - span + 1)
  local window_path = path:gsub("{item}", item)
    :gsub("{from}", dates[first])
    :gsub("{to}", dates[first + span - 1])
  return wrk.format("GET", window_path)
end
