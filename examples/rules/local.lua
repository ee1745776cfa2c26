-- local.lua - an example of site rules next to the default set.

local VIP = {}
for _, d in ipairs(config.options and config.options.vip_domains or {}) do VIP[d] = true end

-- Mail that claims a VIP domain and does not pass DMARC gets extra weight.
symbol "VIP_SPOOF" {
  group = "local", score = 5.0, description = "From a VIP domain without a DMARC pass",
  depends = { "DMARC_POLICY_ALLOW" },
  rule = function(m)
    local d = m.dmarc.from_domain
    if d and VIP[d] and not m.symbols.DMARC_POLICY_ALLOW then
      return true, 1, d .. " is a VIP domain"
    end
    return false
  end,
}

-- Mailing lists: a weight per List-Id header (the rule returns the weight).
symbol "MAILLIST" {
  group = "local", score = 0.1, description = "a mailing list message",
  rule = function(m)
    local ids = m:header("List-Id")
    if #ids == 0 then return false end
    return true, #ids, ids[1]:match("<([^>]+)>") or ids[1]
  end,
}
