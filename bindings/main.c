/*
 * main.c - the `sonde` executable: embeds LuaJIT, makes `sonde.core` and the
 * bundled scripts requirable, and hands the arguments to sonde.cli, whose
 * return value is the exit status.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guard.h"
#include "privsep.h"
#include "sandbox.h"
#include "sonde.h"

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

#ifndef SONDE_SCRIPTS_DIR
#define SONDE_SCRIPTS_DIR "/usr/local/share/sonde/scripts"
#endif

int luaopen_sonde_core(lua_State *L);

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/*
 * Where the bundled scripts are: $SONDE_SCRIPTS, else ../scripts next to the
 * executable (the build tree: build/sonde), else ../share/sonde/scripts (an
 * installed tree), else the compiled-in directory.
 */
static const char *scripts_dir(char *buf, size_t len) {
  const char *env = getenv("SONDE_SCRIPTS");
  char exe[PATH_MAX];
  ssize_t n;
  char *slash;

  if (env && *env)
    return env;
  n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    exe[n] = '\0';
    slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0';
      snprintf(buf, len, "%s/../scripts", exe);
      if (is_dir(buf))
        return buf;
      snprintf(buf, len, "%s/../share/sonde/scripts", exe);
      if (is_dir(buf))
        return buf;
    }
  }
  return SONDE_SCRIPTS_DIR;
}

/* Descriptors 0, 1 and 2 closed at start are opened on /dev/null before
 * anything else is opened: else the first socket would become "standard
 * output" and results would be written into it (libuv asserts on such a
 * loop as well). */
static void std_fds(void) {
  int fd;
  for (fd = 0; fd < 3; fd++)
    if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
      int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
      if (n >= 0 && n != fd) { /* cannot happen: the lowest is free */
        dup2(n, fd);
        close(n);
      }
    }
}

/* The descriptors a run needs at the least: the standard three, the raw
 * sockets, the loop's own (epoll, signals, async), a script and an output
 * file or two, some probe sockets. */
#define MIN_FDS 32

/* Raise the soft descriptor limit to the hard one; a hard limit under
 * MIN_FDS is an error (EMFILE) that names the limit. -> 0 or -1. */
static int fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rlim_t want = rl.rlim_max == RLIM_INFINITY ? 1 << 20 : rl.rlim_max;
    struct rlimit up = {want, rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &up) == 0)
      rl.rlim_cur = want;
  }
  if (rl.rlim_cur < MIN_FDS) {
    fprintf(stderr,
            "sonde: EMFILE: the limit on open files (ulimit -n) is %lu; sonde "
            "needs at least %d\n",
            (unsigned long)rl.rlim_cur, MIN_FDS);
    return -1;
  }
  return 0;
}

/*
 * Take the global option --user NAME (or --user=NAME) out of argv: it is
 * the C side's, read before Lua runs. A `sonde run FILE` script's own
 * arguments are left alone, as is everything after "--".
 */
static const char *take_user_option(int *argc, char **argv) {
  /* Started through sudo, the default is the user who ran sudo: output
   * files (-o) then go where that user may write. Else nobody. */
  const char *sudo_user = getenv("SUDO_USER");
  const char *user = sudo_user && *sudo_user && strcmp(sudo_user, "root") != 0
                         ? sudo_user
                         : "nobody";
  int i, j, limit = *argc;
  if (*argc > 1 && strcmp(argv[1], "run") == 0)
    limit = *argc < 3 ? *argc : 3;
  for (i = 1; i < limit && strcmp(argv[i], "--") != 0;) {
    int n = 0;
    if (strcmp(argv[i], "--user") == 0 && i + 1 < *argc) {
      user = argv[i + 1];
      n = 2;
    } else if (strncmp(argv[i], "--user=", 7) == 0) {
      user = argv[i] + 7;
      n = 1;
    }
    if (n == 0) {
      i++;
      continue;
    }
    for (j = i; j + n <= *argc; j++)
      argv[j] = argv[j + n];
    *argc -= n;
    limit -= n;
  }
  return user;
}

/* A deadline for user scripts (sonde run --timeout): the executable's,
 * not the module's. */

static lua_State *deadline_L;
static volatile sig_atomic_t deadline_hits;

static void deadline_hook(lua_State *L, lua_Debug *ar) {
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "script exceeded its time limit (--timeout)");
}

/*
 * SIGALRM at the deadline: a hook makes the running Lua code raise an
 * error, which ends the script the usual way (its engines close, exit 3).
 * Code that runs no more Lua (a compiled loop, or a wait in the loop with
 * nothing to come) is ended by a second alarm a second later, with a
 * message (write() and _exit() are async-signal-safe).
 */
static void on_deadline(int sig) {
  static const char msg[] =
      "sonde run: the script exceeded --timeout and did not stop: ended\n";
  (void)sig;
  if (deadline_hits++ == 0 && deadline_L) {
    lua_sethook(deadline_L, deadline_hook,
                LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    alarm(1);
    return;
  }
  (void)!write(2, msg, sizeof(msg) - 1);
  _exit(3);
}

/* core.deadline(seconds): arm the deadline (whole seconds, >= 1). */
static int l_deadline(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  struct sigaction sa;
  if (s < 1 || s > 86400 * 365 || s != floor(s))
    return luaL_argerror(L, 1, "whole seconds from 1");
  /* The hook is global in LuaJIT: any thread of this state will do. */
  deadline_L = L;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_deadline;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, NULL);
  alarm((unsigned)s);
  return 0;
}

/* sonde.core as the executable has it: the module, and core.deadline. */
static int open_core(lua_State *L) {
  luaopen_sonde_core(L);
  lua_pushcfunction(L, l_deadline);
  lua_setfield(L, -2, "deadline");
  return 1;
}

static int traceback(lua_State *L) {
  lua_getglobal(L, "debug");
  lua_getfield(L, -1, "traceback");
  lua_pushvalue(L, 1);
  lua_pushinteger(L, 2);
  lua_call(L, 2, 1);
  return 1;
}

int main(int argc, char **argv) {
  char dirbuf[PATH_MAX + 32];
  const char *dir, *user;
  lua_State *L;
  int i, r, status = 3;

  std_fds();
  /* sonde never dies of SIGPIPE: a write to a closed pipe or socket
   * returns EPIPE instead. */
  signal(SIGPIPE, SIG_IGN);
  sonde_guard_signals();
  if (fd_limit() != 0)
    return 3;
  user = take_user_option(&argc, argv);
  /* Raw sockets now, while the process may; the CLI drops the rest once
   * it has opened what the command line names. */
  (void)sonde_raw_preopen();
  sonde_privsep_configure(user);
  dir = scripts_dir(dirbuf, sizeof(dirbuf));
  r = sonde_sandbox_scripts(dir);
  if (r < 0) {
    fprintf(stderr, "sonde: cannot open the scripts directory %s: %s: %s\n",
            dir, sonde_err_name(r), strerror(-r));
    return 3;
  }
  L = luaL_newstate();
  if (L == NULL) {
    fputs("sonde: ENOMEM: cannot create the Lua state\n", stderr);
    return 3;
  }
  luaL_openlibs(L);
  sonde_sandbox(L);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, open_core);
  lua_setfield(L, -2, "sonde.core");
  lua_pop(L, 1);
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dir, dir);
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  lua_pushstring(L, dir);
  lua_setglobal(L, "SONDE_SCRIPTS_DIR");

  lua_pushcfunction(L, traceback);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "sonde.cli");
  if (lua_pcall(L, 1, 1, -3) != 0) {
    fprintf(stderr, "sonde: cannot load the CLI from %s: %s\n", dir,
            lua_tostring(L, -1));
    lua_close(L);
    return 3;
  }
  lua_getfield(L, -1, "main");
  lua_createtable(L, argc, 0);
  for (i = 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_pushstring(L, dir);
  if (lua_pcall(L, 2, 1, 1) != 0)
    fprintf(stderr, "sonde: internal error: %s\n", lua_tostring(L, -1));
  else if (lua_isnumber(L, -1))
    status = (int)lua_tointeger(L, -1);
  /* Closing the state runs every finalizer: engines close their sockets,
   * outputs never committed remove their temporary files. */
  lua_close(L);
  sonde_raw_release();
  sonde_sandbox_release();
  sonde_privsep_release();
  if (fflush(stdout) != 0 && errno != EPIPE && status == 0)
    status = 3;
  /* A signal that came while no engine watched it ends the run as that
   * signal: 128 + its number. */
  if (sonde_guard_pending() && status < 128)
    status = 128 + sonde_guard_pending();
  return status;
}
