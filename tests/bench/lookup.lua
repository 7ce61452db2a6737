-- wrk script for the cross-check in phonebook.sh: GET /api/lookup/{name} of random prefilled
-- names (the same names pb-load registers: "P" + 7 base-26 letters + " Bench@Gilgamesh"),
-- with `Authorization: Bearer $TOKEN` when TOKEN is set (pi-server).
-- Run with: ENTRIES=100000 TOKEN=... wrk -t1 -c64 -d10s --latency -s lookup.lua http://127.0.0.1:PORT
local n = tonumber(os.getenv("ENTRIES") or "100000")
local token = os.getenv("TOKEN") or ""

local function letters(i)
  local t = {}
  for k = 7, 1, -1 do
    t[k] = string.char(97 + i % 26)
    i = math.floor(i / 26)
  end
  return table.concat(t)
end

local headers = {}
if token ~= "" then headers["Authorization"] = "Bearer " .. token end

init = function(args)
  math.randomseed(os.time())
end

request = function()
  local i = math.random(0, n - 1)
  return wrk.format("GET", "/api/lookup/P" .. letters(i) .. "%20Bench@Gilgamesh", headers)
end
