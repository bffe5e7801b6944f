-- sonde sweep: which addresses of prefixes and lists answer? One probe per
-- target (sonde.strategy.sweep), targets from the command line and files
-- (sonde.targets), one record per target in the chosen format
-- (sonde.output), streamed as the answers come.

local cli = require "sonde.cli"
local defaults = require "sonde.defaults"
local campaign = require "sonde.campaign"
local output = require "sonde.output"
local sweep = require "sonde.strategy.sweep"
local formats = require "sonde.format"
local kit = require "sonde.kit"
local header = require "sonde.header"

local fmt = string.format

-- sweep's own format: text, a module of records like the bundled ones.
local MODULES = { text = "sonde.format.sweep" }
local check_format = formats.check(formats.names{ "text" })
local check_shard = campaign.check_shard

-- The most addresses a sweep probes unless --max-targets says more: a /12
-- (2^20). A /8 (2^24) or 0.0.0.0/0 is refused with its size.
local MAX_TARGETS = 1048576

local spec = {
  name = "sweep",
  summary = "find which addresses of prefixes and lists answer (a fast liveness sweep)",
  usage = "sonde sweep [options] [TARGET...]",
  description = [[
Sends one probe to every address of the targets, many at once, and writes one record per address as its answer comes: alive or not, what answered, and the round-trip time.

Targets are addresses (198.18.0.1, 2001:db8::1), CIDR prefixes (198.18.0.0/24; IPv6 /96 or longer) and host names, on the command line and in files given with --targets (one per line, '-' for standard input; '#' starts a comment, blank lines are ignored; a line that is not a target is reported with its line number and skipped). The targets form a set: an address given twice, or inside two prefixes, is probed once. Host names are resolved all at once, before the first probe; a name that does not resolve is reported and skipped.

With -p icmp (the default) the probe is an ICMP echo request and a target is alive when it sends the echo reply. With -p tcp it is a TCP connect to --port (80): a SYN-ACK (open) and a RST (closed) both say the host is up. With -p udp it is a datagram to --port (33434, which should be closed): the target's ICMP port unreachable (or a UDP reply) says it is up. An answer from another address (a router's host unreachable, a filter's administratively prohibited) is recorded but does not make the target alive.

Probes go out at --rate probes per second at most, with --window probes in flight at most; each is given -w seconds to be answered. Targets are probed in a seeded pseudo-random order (--seed), as zmap does, so that consecutive probes go to different networks. With --rate 0 (no limit), a window of more than a few thousand can send faster than the replies are read: the kernel drops what overflows the receive buffer, and those targets show no answer. With -p tcp every probe in flight holds a socket: keep --window under the open-file limit (ulimit -n).

--shard K/N splits the targets into N shards (K counts from 0) and probes shard K only: the order of --seed is cut into N interleaved parts, so that N processes given the same targets and the same seed (on one machine or on N) probe every address exactly once, and their outputs (jsonl, csv without the repeated header) merge by concatenation. In a Kubernetes Indexed Job with completions N, each pod runs sonde sweep --shard $JOB_COMPLETION_INDEX/N --seed S ...

Formats (--format): jsonl (the default: one JSON object per target, described by the "sweep" definition of scripts/sonde/schema/sonde.schema.json), text (a line per target and a summary), csv (a header row, a row per target), markdown (a table), or the path of a Lua file that returns a format of your own (see examples/format_example.lua). -o FILE writes to FILE atomically: to a temporary file in the same directory, renamed over FILE at the end (also when interrupted: FILE then holds the records of the probes that ended). Files named on the command line are opened before sonde gives up its privileges: anywhere the user who ran it may read or write, and FILE belongs to that user.

On standard error: a progress line (targets done out of the total, the rate, the time left) for runs longer than two seconds, when standard error is a terminal; and, unless the format has its own (text and markdown do), the summary at the end. -q turns both off.

Exit status:

    0    at least one target is alive
    1    none is
    2    usage error (an option, a target on the command line, no target)
    3    runtime error: no permission, an unreadable --targets file,
         -o not writable, every probe failed locally (no route)
    130  interrupted by SIGINT (129 SIGHUP, 131 SIGQUIT, 143 SIGTERM); the records of the probes
         that ended are written, then the summary]],
  options = {
    { "-p", "--protocol", arg = "PROTO", choices = { "icmp", "tcp", "udp" }, default = "icmp",
      help = "probe: ICMP echo, TCP connect to --port, UDP to --port" },
    { nil, "--port", arg = "PORT", type = "int", min = 1, max = 65535,
      help = "TCP: the port to connect to (default 80); UDP: the destination port (default 33434)" },
    defaults.tcp_mode_option(),
    { nil, "--targets", arg = "FILE", list = true,
      help = "read targets from FILE, one per line ('-': standard input)" },
    { nil, "--rate", arg = "PPS", type = "number", min = 0, max = 10000000, default = "10000",
      help = "probes per second at most (0: no limit)" },
    { nil, "--window", arg = "N", type = "int", min = 1, max = 1000000,
      help = "probes in flight at most (default 4096; with -p tcp 1000, one socket each)" },
    { "-w", "--wait", arg = "SECONDS", type = "number", min = 0.001, max = 600, default = "1",
      help = "how long to wait for the answer to one probe" },
    { "-t", "--ttl", arg = "N", type = "int", min = 1, max = 255, default = defaults.TTL,
      help = "TTL (IPv6: hop limit) of the probes" },
    { nil, "--shard", arg = "K/N", check = check_shard,
      help = "probe shard K of N only (K from 0; in a Kubernetes Indexed Job, K = $JOB_COMPLETION_INDEX)" },
    { nil, "--seed", arg = "S", type = "int", min = 0, max = 4294967295, default = 0,
      help = "the seed of the order of the targets (and of the shards)" },
    { nil, "--format", arg = "FORMAT", check = check_format, default = "jsonl",
      help = "text, jsonl, csv, markdown, or a Lua format file (./my.lua)" },
    output.OPTION,
    { nil, "--alive", key = "alive_only", flag = true,
      help = "write the records of alive targets only (the summary still counts all)" },
    { "-4", key = "ipv4", flag = true, help = "IPv4 only: host names resolve to their IPv4 address; an IPv6 target is a usage error" },
    { "-6", key = "ipv6", flag = true, help = "IPv6 only: host names resolve to their IPv6 address; an IPv4 target is a usage error" },
    { nil, "--max-targets", arg = "N", type = "int", min = 1, max = 4294967296, default = MAX_TARGETS,
      help = "refuse to start when the targets (after --shard) are more than N addresses, and say how many they are: a /8 or 0.0.0.0/0 typed by mistake does not start" },
    { "-q", "--quiet", flag = true, help = "no progress line, no summary on standard error" },
    { nil, "--privileged", flag = true, help = "use raw sockets or fail (EPERM)" },
    { nil, "--unprivileged", flag = true, help = "use ICMP datagram sockets and socket error queues" },
    header.source_options{ source = "-S", interface = "-i", also = { "--source-ip" } }[1],
    header.source_options{ source = "-S", interface = "-i" }[2],
  },
  positionals = { { name = "TARGET", many = true, help = "address, CIDR prefix or host name" } },
  exclusive = { { "privileged", "unprivileged" }, { "ipv4", "ipv6" } },
  examples = {
    "sonde sweep 198.18.0.0/24",
    "sonde sweep -p tcp --port 443 --format csv -o up.csv 198.18.0.0/22 198.18.8.1",
    "sonde sweep --targets hosts.txt --rate 50000 -w 0.5",
    "sonde sweep --shard 2/8 --seed 42 --targets prefixes.txt > shard-2.jsonl",
    "cat list.txt | sonde sweep --targets - --alive -q",
  },
}

---------------------------------------------------------------------------
-- Standard error: the progress line and messages
---------------------------------------------------------------------------

-- "12345/65536 (18.8 %), 52341 targets/s, 1s left"
local function progress_text(state, total)
  local rate = state.elapsed > 0 and state.done / state.elapsed or 0
  local left = rate > 0 and (total - state.done) / rate or 0
  return fmt("sweep: %d/%d (%.1f %%), %d alive, %.0f targets/s, %s left", state.done, total,
    total > 0 and 100 * state.done / total or 100, state.alive, rate, campaign.duration_text(left))
end

local function summary_text(s, total)
  local text = fmt("%d of %d target%s alive (%.1f %%); %d no answer, %d answered otherwise, "
    .. "%d failed; %.2f s, %.0f probes/s", s.alive, total, total == 1 and "" or "s",
    total > 0 and 100 * s.alive / total or 0, s.timeouts, s.other, s.failed,
    s.duration, s.rate)
  if s.stop_reason ~= "done" then
    text = text .. fmt(" (%s after %d of %d)", s.stop_reason, s.done, total)
  end
  if s.dropped and s.dropped > 0 then
    text = text .. fmt("; %d replies dropped by the kernel (receive buffer full:"
      .. " lower --window or --rate)", s.dropped)
  end
  return text
end

---------------------------------------------------------------------------
-- The command
---------------------------------------------------------------------------

-- The targets form one set, probed in one loop on one engine
-- (sonde.strategy.sweep: one probe per address, sent by the engine's
-- sender thread while this one reads the replies), not a job per target.
local function run(opts, ctx)
  header.source_family(opts, opts.target) -- --source fixes the family
  local protocol = opts.protocol
  if opts.port and protocol == "icmp" then
    cli.usage_error("--port applies to -p tcp and -p udp, not icmp")
  end
  local family = opts.ipv4 and 4 or opts.ipv6 and 6 or nil
  if family then
    for _, w in ipairs(opts.target) do
      local e = require("sonde.targets").parse(w)
      if e and e.af and e.af ~= family then
        cli.usage_error("%s is an IPv%d target, but -%d was given", w, e.af, family)
      end
    end
  end
  local port = protocol ~= "icmp" and (opts.port or sweep.DEFAULT_PORT[protocol]) or nil
  local window = opts.window or (protocol == "tcp" and 1000 or 4096)
  local stop, summary, first_error
  local kr
  kr = kit.start(opts, ctx, {
    cmd = "sweep", what = "targets alive", words = opts.target, as_list = true,
    missing = "no targets (give addresses, prefixes or --targets FILE)",
    modules = MODULES, flush = false,
    -- send_thread: the kernel's work in each sendmsg() (a lab's whole
    -- path, on veth) and ours per reply go on at once, on two cores
    engine = { rate = opts.rate, window = window, wait = opts.wait, send_thread = true,
      privileged = opts.privileged and "raw" or opts.unprivileged and "unprivileged" or nil },
    on_signal = function()
      if stop then stop() end
    end,
    -- 0 when any target is alive; the summary line first (unless the
    -- format has its own), also when interrupted; a closed pipe ends the
    -- sweep quietly (nobody reads the rest)
    tally = { any = true, failed = "every probe failed" },
    say = function() return not opts.quiet and not kr.sink.module.footer end,
    closed = cli.EXIT.OK,
  })
  local eng, sink = kr.eng, kr.sink

  kr:each{ all = function(progress)
    local iter, total, n = campaign.order(eng, kr.tg.list, ctx, "sweep", family, opts.seed,
      opts.shard, opts.max_targets)
    local shard, shards = 0, 1
    if opts.shard then shard, shards = opts.shard[1], opts.shard[2] end
    local meta = { command = "sweep", version = 1, columns = sweep.COLUMNS, fields = sweep.FIELDS,
      protocol = protocol, port = port, total = total, targets = n, shard = shard,
      shards = shards, seed = opts.seed, rate = opts.rate, window = window,
      wait = opts.wait, ttl = opts.ttl }
    sink:start(meta)
    if not sink:ok() then return end
    local alive_only = opts.alive_only
    summary = sweep.run{
      eng = eng, next = iter, protocol = protocol, port = port, ttl = opts.ttl,
      src = opts.source, iface = opts.interface,
      wait = opts.wait, limit = window + 1024,
      on_record = function(rec)
        if rec.error and require("sonde.target").icmp_hint(rec.error) then
          rec.error.message = require("sonde.target").ICMP_REFUSED
        end
        if rec.error and not first_error and rec.status ~= "reply" then first_error = rec.error end
        if alive_only and not rec.alive then return end
        sink:record(rec)
        -- nobody reads any more (a closed pipe, a full disk): stop
        if sink.write_error and stop then stop() end
      end,
      on_stop = function(fn)
        stop = fn
        if kr.signal then fn() end
      end,
      every = 0.25,
      progress = function(state)
        sink:flush()
        if not sink:ok() then stop() end
        progress.show(progress_text(state, total), state.elapsed)
      end,
    }
    if kr.signal then summary.stop_reason = "interrupted" end
    summary.text = summary_text(summary, total)
    summary.total = total
    kr.tally:sum(summary.done, summary.alive, summary.failed, first_error)
    kr.tally.line = summary.text
  end }
  -- ICMP datagram sockets refused (EACCES): say why, not "a firewall"
  local hint = require("sonde.target").icmp_hint(first_error)
  if hint and not opts.quiet then
    ctx.stderr:write("sonde sweep: ", hint, "\n")
    kr.tally.hinted = true   -- said once: not again at the end
  end
  return kr:finish(summary)
end

return { spec = spec, run = run }
