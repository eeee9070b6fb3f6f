-- Test fixture for tests/host/prosody.rs: where another domain's server listens, given in
-- the configuration (`test_s2s_hosts = { ["domain"] = { "address", port } }`), as
-- cloud-notify's `s2s_hosts` does. Prosody 0.12 has no such option, and its resolver
-- (net.dns, without lua-unbound) asks only the servers in /etc/resolv.conf, on port 53,
-- so a DNS server run by a test cannot serve it. Domains not listed resolve as usual.
module:set_global();

local service = require "net.resolvers.service";
local manual = require "net.resolvers.manual";

local hosts = module:get_option("test_s2s_hosts", {});
local resolve = service.new;

function service.new(hostname, service_name, proto, extra)
	local target = hosts[hostname];
	if not target then
		return resolve(hostname, service_name, proto, extra);
	end
	-- Only the STARTTLS service: no direct TLS record for a listed domain.
	if service_name ~= "xmpp-server" then
		return manual.new({}, proto, extra);
	end
	module:log("debug", "%s is at %s port %d (test_s2s_hosts)", hostname, target[1], target[2]);
	return manual.new({ { proto .. "4", target[1], target[2], extra } }, proto, extra);
end

function module.unload()
	service.new = resolve;
end
