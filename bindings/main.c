/*
 * main.c - the `sonde` executable: embeds LuaJIT, makes `sonde.core` and the
 * bundled scripts requirable, and hands the arguments to sonde.cli, whose
 * return value is the exit status.
 */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

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

/* The capability sets of this process (no libcap needed). */
static int caps_get(struct __user_cap_data_struct data[2]) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  return (int)syscall(SYS_capget, &h, data);
}

static int caps_clear(void) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof(data));
  (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  return (int)syscall(SYS_capset, &h, data);
}

/*
 * Least privilege: the raw sockets are opened first (sonde_raw_preopen);
 * then, before any Lua runs, a process started as root becomes `user`
 * (default: $SUDO_USER when started through sudo, else nobody) and one
 * started with file capabilities drops them all.
 * Either way it can gain nothing back (PR_SET_NO_NEW_PRIVS). Returns 0, or
 * prints why not and returns -1.
 */
static int drop_privileges(const char *user) {
  struct __user_cap_data_struct caps[2];
  int have_caps;

  (void)sonde_raw_preopen();
  if (geteuid() == 0 || getuid() == 0) {
    struct passwd *pw = getpwnam(user);
    if (pw == NULL) {
      fprintf(stderr, "sonde: --user: no such user '%s'\n", user);
      return -1;
    }
    if (pw->pw_uid == 0) {
      fprintf(stderr, "sonde: --user %s: refusing to run scripts as root\n",
              user);
      return -1;
    }
    if (setgroups(0, NULL) != 0 ||
        setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) != 0 ||
        setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) != 0) {
      fprintf(stderr, "sonde: cannot switch to user '%s': %s\n", user,
              strerror(errno));
      return -1;
    }
  }
  memset(caps, 0, sizeof(caps));
  have_caps = caps_get(caps) == 0 &&
              (caps[0].effective | caps[0].permitted | caps[1].effective |
               caps[1].permitted) != 0;
  if (have_caps && caps_clear() != 0) {
    fprintf(stderr, "sonde: cannot drop capabilities: %s\n", strerror(errno));
    return -1;
  }
  (void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
#if defined(__SANITIZE_ADDRESS__)
  /* Changing credentials made the process non-dumpable, and LeakSanitizer
   * must ptrace it at exit. Only in sanitizer builds: a dumpable process
   * could be ptraced by any other process of that user (raw sockets!). */
  (void)prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
#endif
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
  const char *dir;
  lua_State *L;
  int i, status = 3;

  /* sonde never dies of SIGPIPE: writes report EPIPE instead (SEEDS.md 002). */
  signal(SIGPIPE, SIG_IGN);
  if (drop_privileges(take_user_option(&argc, argv)) != 0)
    return 3;
  L = luaL_newstate();
  if (L == NULL) {
    fputs("sonde: cannot create the Lua state (out of memory)\n", stderr);
    return 3;
  }
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_sonde_core);
  lua_setfield(L, -2, "sonde.core");
  lua_pop(L, 1);
  dir = scripts_dir(dirbuf, sizeof(dirbuf));
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
  /* Closing the state runs every finalizer: engines close their sockets. */
  lua_close(L);
  sonde_raw_release();
  if (fflush(stdout) != 0 && errno != EPIPE && status == 0)
    status = 3;
  return status;
}
