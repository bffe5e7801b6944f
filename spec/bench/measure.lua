-- spec/bench/measure.lua: runs commands and measures each run exactly:
-- wall time (monotonic clock around fork/exec/wait4), CPU time and peak
-- RSS (wait4's rusage: the command and the processes it waited for).
-- Runs inside the lab namespace (make bench starts it there), so no
-- `ip netns exec` overhead is counted.
--
--   luajit measure.lua PLAN.json RESULT.json
--
-- PLAN: { reps = N, cases = { { name =, argv = {...}, stdout = FILE? }, ... } }
-- The cases run interleaved: rep 1 of every case, then rep 2, ... RESULT: per
-- case the list of runs { wall, user, sys, maxrss_kb, status }; the first
-- run's stdout stays in FILE for the caller to check. A case named
-- "(launcher)" running `true` shows the floor of maxrss: Linux keeps a
-- forked child's RSS from before exec() in ru_maxrss, so this process
-- stays small (it never holds a tool's output).

local ffi = require "ffi"
local cjson = require "cjson"

ffi.cdef [[
typedef int pid_t;
struct timespec { long tv_sec; long tv_nsec; };
struct timeval { long tv_sec; long tv_usec; };
struct rusage {
  struct timeval ru_utime; struct timeval ru_stime;
  long ru_maxrss, ru_ixrss, ru_idrss, ru_isrss, ru_minflt, ru_majflt, ru_nswap,
       ru_inblock, ru_oublock, ru_msgsnd, ru_msgrcv, ru_nsignals, ru_nvcsw,
       ru_nivcsw;
};
int clock_gettime(int clk, struct timespec *ts);
pid_t fork(void);
int execvp(const char *file, char *const argv[]);
pid_t wait4(pid_t pid, int *status, int options, struct rusage *ru);
int open(const char *path, int flags, int mode);
int dup2(int a, int b);
int close(int fd);
void _exit(int status);
]]

local C = ffi.C
local O_WRONLY, O_CREAT, O_TRUNC = 1, 64, 512
local CLOCK_MONOTONIC = 1

local function now()
  local ts = ffi.new("struct timespec")
  C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

local function tv(t) return tonumber(t.tv_sec) + tonumber(t.tv_usec) / 1e6 end

-- Runs argv with stdout to `out` (a path; /dev/null if nil), stderr kept.
local function run(argv, out)
  local cargv = ffi.new("char *[?]", #argv + 1)
  local keep = {}
  for i, a in ipairs(argv) do
    keep[i] = ffi.new("char[?]", #a + 1, a)
    cargv[i - 1] = keep[i]
  end
  cargv[#argv] = nil
  local t0 = now()
  local pid = C.fork()
  if pid == 0 then
    local fd = C.open(out or "/dev/null", O_WRONLY + O_CREAT + O_TRUNC, 420)
    if fd >= 0 then C.dup2(fd, 1) C.close(fd) end
    C.execvp(cargv[0], cargv)
    C._exit(127)
  end
  assert(pid > 0, "fork failed")
  local status = ffi.new("int[1]")
  local ru = ffi.new("struct rusage")
  assert(C.wait4(pid, status, 0, ru) == pid, "wait4 failed")
  local wall = now() - t0
  local st = status[0]
  return {
    wall = wall, user = tv(ru.ru_utime), sys = tv(ru.ru_stime),
    maxrss_kb = tonumber(ru.ru_maxrss),
    status = (st % 128 == 0) and math.floor(st / 256) % 256 or 128 + st % 128,
  }
end

local plan = cjson.decode(assert(io.open(arg[1])):read("*a"))
local results = {}
for _, c in ipairs(plan.cases) do results[c.name] = {} end
for rep = 1, plan.reps do
  for _, c in ipairs(plan.cases) do
    local out = c.stdout and (c.stdout .. (rep == 1 and "" or ".x")) or nil
    table.insert(results[c.name], run(c.argv, out))
    local r = results[c.name][rep]
    io.stderr:write(("  %-28s rep %d/%d  %.3f s  exit %d\n"):format(c.name, rep, plan.reps,
      r.wall, r.status))
  end
end
local f = assert(io.open(arg[2], "w"))
f:write(cjson.encode(results))
f:close()
