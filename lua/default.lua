-- default.lua - the default ruleset: SPF, DKIM and DMARC symbols, DMARC enforcement, allowlist, tempfail.
--
-- Scores follow rspamd's auth modules; the difference is DMARC: a failure under p=reject or
-- p=quarantine forces that action (after pct), whatever the score says.
-- Options, from authscore.conf:
--   allowlist = { ips = { "192.0.2.0/24", ... }, dkim_domains = { "lists.example.org", ... } }
-- With Redis, m.reputation adds what the cluster has seen (DMARC_REPUTATION_SPOOF).

local allow = config.allowlist or {}
local TRUSTED_IPS = allow.ips or { "127.0.0.0/8", "::1" }
local TRUSTED_DKIM = allow.dkim_domains or {}

local function spf_is(word)
  return function(m) return m.spf.result == word, 1, m.spf.reason end
end

local function dkim_any(word)
  return function(m)
    for _, sig in ipairs(m.dkim) do
      if sig.result == word then return true, 1, sig.domain .. ": " .. (sig.reason or word) end
    end
    return false
  end
end

-- Whether a domain is aligned with From in the relaxed sense (same organizational domain).
local function aligned(m, domain)
  if not domain or not m.dmarc.from_domain then return false end
  domain = domain:lower()
  local org = m.dmarc.org_domain or m.dmarc.from_domain
  return domain == org or domain:sub(-(#org + 1)) == "." .. org
end

-- SPF --------------------------------------------------------------------------------------
symbol "R_SPF_ALLOW"    { group = "spf", score = -0.2, description = "SPF pass", rule = spf_is("pass") }
symbol "R_SPF_FAIL"     { group = "spf", score = 1.0, description = "SPF fail", rule = spf_is("fail") }
symbol "R_SPF_SOFTFAIL" { group = "spf", score = 0.0, description = "SPF softfail", rule = spf_is("softfail") }
symbol "R_SPF_NEUTRAL"  { group = "spf", score = 0.0, description = "SPF neutral", rule = spf_is("neutral") }
symbol "R_SPF_NA"       { group = "spf", score = 0.0, description = "no SPF record", rule = spf_is("none") }
symbol "R_SPF_DNSFAIL"  { group = "spf", score = 0.0, description = "SPF temperror", rule = spf_is("temperror") }
symbol "R_SPF_PERMFAIL" { group = "spf", score = 0.0, description = "SPF permerror", rule = spf_is("permerror") }

-- DKIM -------------------------------------------------------------------------------------
symbol "R_DKIM_ALLOW"    { group = "dkim", score = -0.2, description = "a DKIM signature verified", rule = dkim_any("pass") }
symbol "R_DKIM_REJECT"   { group = "dkim", score = 1.0, description = "a DKIM signature failed", rule = dkim_any("fail") }
symbol "R_DKIM_TEMPFAIL" { group = "dkim", score = 0.0, description = "DKIM key lookup failed temporarily", rule = dkim_any("temperror") }
symbol "R_DKIM_PERMFAIL" { group = "dkim", score = 0.0, description = "unusable DKIM signature or key", rule = dkim_any("permerror") }
symbol "R_DKIM_POLICY"   { group = "dkim", score = 0.5, description = "signature refused by policy (rsa-sha1, short key)", rule = dkim_any("policy") }
symbol "R_DKIM_NA"       { group = "dkim", score = 0.0, description = "no DKIM signature",
  rule = function(m) return #m.dkim == 0 end }

-- DMARC ------------------------------------------------------------------------------------
local function dmarc_fail_with(disposition)
  return function(m)
    local d = m.dmarc
    if d.result == "fail" and d.disposition == disposition then
      return true, 1, "DMARC policy of " .. d.from_domain .. " is " .. d.policy .. ": " .. (d.reason or "not aligned")
    end
    return false
  end
end

symbol "DMARC_POLICY_ALLOW" { group = "dmarc", score = -0.5, description = "DMARC pass",
  rule = function(m) return m.dmarc.result == "pass", 1, m.dmarc.from_domain end }
symbol "DMARC_POLICY_REJECT" { group = "dmarc", score = 2.0, action = "reject",
  description = "DMARC fail under p=reject (sampled by pct): the message is refused",
  rule = dmarc_fail_with("reject") }
symbol "DMARC_POLICY_QUARANTINE" { group = "dmarc", score = 1.5, action = "quarantine",
  description = "DMARC fail under p=quarantine, or p=reject outside pct: quarantined",
  rule = dmarc_fail_with("quarantine") }
symbol "DMARC_POLICY_SOFTFAIL" { group = "dmarc", score = 0.1, description = "DMARC fail, policy asks for nothing",
  rule = dmarc_fail_with("none") }
symbol "DMARC_NA" { group = "dmarc", score = 0.0, description = "no DMARC record",
  rule = function(m) return m.dmarc.result == "none" and not m.dmarc.no_from end }
symbol "DMARC_BAD_POLICY" { group = "dmarc", score = 0.5, description = "DMARC record unusable (permerror)",
  rule = function(m) return m.dmarc.result == "permerror", 1, m.dmarc.reason end }
symbol "DMARC_DNSFAIL" { group = "dmarc", score = 0.0, action = "tempfail", priority = 5,
  description = "DMARC record lookup failed temporarily: try again later",
  message = "Temporary DNS failure looking up the sender's DMARC policy, try again later",
  rule = function(m) return m.dmarc.result == "temperror", 1, m.dmarc.reason end }

-- A DMARC failure that a temporary DNS error may have caused is not final: defer, don't reject.
symbol "AUTH_TEMPFAIL" { group = "dmarc", score = 0.0, action = "tempfail", priority = 5,
  depends = { "DMARC_POLICY_REJECT", "DMARC_POLICY_QUARANTINE" },
  description = "DMARC would fail, but an aligned SPF or DKIM check had a temporary error",
  message = "Temporary failure verifying the sender, try again later",
  rule = function(m)
    if not (m.symbols.DMARC_POLICY_REJECT or m.symbols.DMARC_POLICY_QUARANTINE) then return false end
    if m.spf.result == "temperror" and aligned(m, m.spf.domain) then return true, 1, "SPF temperror" end
    for _, sig in ipairs(m.dkim) do
      if sig.result == "temperror" and aligned(m, sig.domain) then return true, 1, "DKIM temperror for " .. sig.domain end
    end
    return false
  end }

-- Reputation (Redis) -------------------------------------------------------------------------
-- The spoof of a domain whose policy asks for nothing: its mail passes DMARC day after day, and
-- now a message fails DMARC from a network (/24, /64) that never sent it aligned mail.  Mailing
-- lists (List-Id) break DMARC for good reasons and are left to the policy.
local SPOOF_MIN_PASSES = 20        -- DMARC passes of the From domain in 30 days
local SPOOF_MAX_FAIL_RATIO = 0.25  -- its DMARC fails, at most this share of its passes

symbol "DMARC_REPUTATION_SPOOF" { group = "reputation", score = 9.0,
  description = "DMARC fail for a From domain that normally passes, from a network that never sent it aligned mail",
  rule = function(m)
    if m.dmarc.result ~= "fail" then return false end   -- first: m.reputation is built when asked for
    local r = m.reputation
    if not r.available or #m:header("List-Id") > 0 then return false end
    local d = r.from_domain
    if d.dmarc_pass_30d < SPOOF_MIN_PASSES or d.dmarc_fail_30d > d.dmarc_pass_30d * SPOOF_MAX_FAIL_RATIO then
      return false
    end
    if r.net_from.dmarc_pass_30d > 0 then return false end
    return true, 1, string.format("%s passed DMARC %d times in 30 days (%d fails); %s never sent it aligned mail",
      m.dmarc.from_domain, d.dmarc_pass_30d, d.dmarc_fail_30d, r.net.id or m.ip)
  end }

-- From header --------------------------------------------------------------------------------
symbol "MULTIPLE_FROM" { group = "headers", score = 1.0, description = "several From headers or addresses",
  rule = function(m) return m.dmarc.multiple_from end }
symbol "MISSING_FROM" { group = "headers", score = 2.0, description = "no usable From header",
  rule = function(m) return m.dmarc.no_from end }

-- Allowlist: trusted forwarders and local senders are accepted whatever DMARC says ----------
symbol "ALLOWLIST_IP" { group = "allowlist", score = -5.0, action = "accept", priority = 10,
  description = "client address in the allowlist (local senders, trusted forwarders)",
  rule = function(m) return authscore.ip_in(m.ip, TRUSTED_IPS), 1, m.ip end }
symbol "ALLOWLIST_DKIM" { group = "allowlist", score = -5.0, action = "accept", priority = 10,
  description = "verified DKIM signature of a trusted forwarder",
  rule = function(m)
    for _, sig in ipairs(m.dkim) do
      if sig.result == "pass" then
        for _, d in ipairs(TRUSTED_DKIM) do
          if sig.domain:lower() == d:lower() then return true, 1, sig.domain end
        end
      end
    end
    return false
  end }
