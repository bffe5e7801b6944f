/*
 * privsep.c - how the `sonde` executable gives up its privileges, and the
 * small part that keeps them to commit output files.
 *
 * The order is tcpdump's (-w opened before -Z):
 *  1. main() opens the raw sockets (sonde_raw_preopen) and names the user
 *     to become (sonde_privsep_configure);
 *  2. the CLI, still privileged, reads what the command line names (the
 *     bundled scripts, `sonde run FILE`, --format/--retry/--targets files)
 *     and creates the -o files (sonde.core.output_open);
 *  3. sonde.core.drop_privileges() becomes that user (root: $SUDO_USER
 *     under sudo, else nobody, or --user), or, run through a setcap
 *     binary, clears every capability; no new privilege can come back
 *     (PR_SET_NO_NEW_PRIVS), and where the kernel has Landlock nothing can
 *     be opened for writing under /proc (a script could otherwise write
 *     its own memory through /proc/self/mem);
 *  4. only then does any script run or any engine exist: an engine asked
 *     for before the drop is refused (sonde_privsep_pending).
 *
 * A process started as root that writes -o files forks at the drop. The
 * parent keeps root for one job, the commit helper: it closes every
 * descriptor it inherited (the raw sockets included), forwards signals to
 * the child, and answers two requests over a socket pair: "commit file i"
 * (rename its temporary file over the target, which needs write access to
 * a directory the dropped user may not enter) and "discard file i". When
 * the child ends it removes every temporary file not committed and exits
 * with the child's status. It runs no Lua and takes no path from the
 * child: only the index of a file named before the drop.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/landlock.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lua.h"

#include "guard.h"
#include "privsep.h"
#include "sonde.h"

enum { OUT_PENDING, OUT_COMMITTED, OUT_DISCARDED };

typedef struct {
  char *tmp;  /* the temporary file, NULL for a file written in place */
  char *path; /* the file it replaces */
  int state;
  int local;  /* created after the drop: committed here, never by the helper */
} out_t;

enum { REQ_COMMIT = 1, REQ_DISCARD = 2 };

typedef struct {
  int op;
  int index;
} req_t;

static struct {
  int configured; /* main() asked for a drop ... */
  int dropped;    /* ... and it happened */
  int failed;     /* ... and it failed: nothing may run privileged */
  char *user;
  int chown_outputs; /* outputs belong to owner_uid/gid (sudo) */
  uid_t owner_uid;
  gid_t owner_gid;
  int helper_fd; /* the child's end towards the commit helper, or -1 */
  out_t *outs;
  int nouts;
  int states; /* Lua states that opened sonde.core (sonde_privsep_state) */
} ps = {0, 0, 0, NULL, 0, 0, 0, -1, NULL, 0, 0};

static volatile pid_t helper_child;

void sonde_privsep_configure(const char *user) {
  const char *sudo_uid = getenv("SUDO_UID"), *sudo_gid = getenv("SUDO_GID");
  ps.configured = 1;
  free(ps.user);
  ps.user = strdup(user);
  /* Output files belong to whoever ran the command: under sudo, the user
   * who ran sudo, not root. */
  if (getuid() == 0 && sudo_uid && sudo_gid && *sudo_uid && *sudo_gid) {
    char *e1, *e2;
    unsigned long u = strtoul(sudo_uid, &e1, 10),
                  g = strtoul(sudo_gid, &e2, 10);
    if (*e1 == '\0' && *e2 == '\0' && u != 0) {
      ps.chown_outputs = 1;
      ps.owner_uid = (uid_t)u;
      ps.owner_gid = (gid_t)g;
    }
  }
}

int sonde_privsep_pending(void) { return ps.configured && !ps.dropped; }

/* Frees the table of outputs (the files are left as they are). */
static void free_outputs(void) {
  int i;
  for (i = 0; i < ps.nouts; i++) {
    free(ps.outs[i].tmp);
    free(ps.outs[i].path);
  }
  free(ps.outs);
  ps.outs = NULL;
  ps.nouts = 0;
}

void sonde_privsep_release(void) {
  free_outputs();
  free(ps.user);
  ps.user = NULL;
  if (ps.helper_fd != -1) {
    close(ps.helper_fd);
    ps.helper_fd = -1;
  }
}

int sonde_privsep_output_owner(uid_t *uid, gid_t *gid) {
  if (!ps.chown_outputs)
    return 0;
  *uid = ps.owner_uid;
  *gid = ps.owner_gid;
  return 1;
}

/*
 * A Lua state opened sonde.core (opened 1) or is closing (0). Where main()
 * configured nothing (the Lua module in another program: luajit, busted)
 * no one calls sonde_privsep_release, and LuaJIT unloads sonde.core when
 * the last state closes: the table of outputs goes with the last state,
 * else its memory stays allocated behind a pointer that is no longer
 * mapped. An output still pending then is one its state never finished:
 * its temporary file is removed here, as its own finalizer would (which,
 * run after this, finds no entry and does nothing).
 */
void sonde_privsep_state(int opened) {
  int i;
  ps.states += opened ? 1 : -1;
  if (opened || ps.states > 0 || ps.configured)
    return;
  for (i = 0; i < ps.nouts; i++)
    if (ps.outs[i].state == OUT_PENDING && ps.outs[i].tmp)
      (void)unlink(ps.outs[i].tmp);
  free_outputs();
}

int sonde_privsep_add_output(const char *tmp, const char *path) {
  out_t *n;
  n = realloc(ps.outs, (size_t)(ps.nouts + 1) * sizeof(*n));
  if (n == NULL)
    return -ENOMEM;
  ps.outs = n;
  n[ps.nouts].tmp = tmp ? strdup(tmp) : NULL;
  n[ps.nouts].path = strdup(path);
  n[ps.nouts].state = OUT_PENDING;
  /* A script's own output after the drop: its user's rights, its commit. */
  n[ps.nouts].local = ps.dropped;
  if ((tmp && n[ps.nouts].tmp == NULL) || n[ps.nouts].path == NULL) {
    free(n[ps.nouts].tmp);
    free(n[ps.nouts].path);
    return -ENOMEM;
  }
  return ps.nouts++;
}

/* Carry out a request on output i, in whichever process may. */
static int do_request(int op, int i) {
  out_t *o;
  if (i < 0 || i >= ps.nouts)
    return -EINVAL;
  o = &ps.outs[i];
  if (o->state != OUT_PENDING)
    return op == REQ_DISCARD ? 0 : -EALREADY;
  if (op == REQ_COMMIT) {
    if (o->tmp && rename(o->tmp, o->path) != 0)
      return -errno;
    o->state = OUT_COMMITTED;
    return 0;
  }
  if (o->tmp)
    (void)unlink(o->tmp);
  o->state = OUT_DISCARDED;
  return 0;
}

/* Ask the helper, or do it here when there is none. */
static int request(int op, int i) {
  req_t q = {op, i};
  int reply, r;
  if (ps.helper_fd == -1 || (i >= 0 && i < ps.nouts && ps.outs[i].local))
    return do_request(op, i);
  do
    r = (int)send(ps.helper_fd, &q, sizeof(q), MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  if (r != (int)sizeof(q))
    return r < 0 ? -errno : -EIO;
  do
    r = (int)recv(ps.helper_fd, &reply, sizeof(reply), 0);
  while (r < 0 && errno == EINTR);
  if (r != (int)sizeof(reply))
    return r < 0 ? -errno : -EIO; /* the helper is gone */
  if (reply == 0 && i >= 0 && i < ps.nouts)
    ps.outs[i].state = op == REQ_COMMIT ? OUT_COMMITTED : OUT_DISCARDED;
  return reply;
}

int sonde_privsep_commit(int i) { return request(REQ_COMMIT, i); }

void sonde_privsep_discard(int i) { (void)request(REQ_DISCARD, i); }

/* ---------------------------------------------------------------------- */
/* The commit helper (the parent, still privileged)                        */

static void forward_signal(int sig) {
  int saved = errno;
  if (helper_child > 0)
    (void)kill(helper_child, sig);
  errno = saved;
}

static void helper_run(int sock, pid_t child) {
  static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1,
                                  SIGUSR2, SIGWINCH};
  struct sigaction sa;
  int status = 0, i, null;
  unsigned k;

  helper_child = child;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = forward_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (k = 0; k < sizeof(forwarded) / sizeof(forwarded[0]); k++)
    (void)sigaction(forwarded[k], &sa, NULL);
  /* One that came between the fork and now was kept by the guard. */
  if (sonde_guard_pending())
    (void)kill(child, sonde_guard_pending());
  /* Nothing of the prober stays here: every inherited descriptor but the
   * socket and stderr is closed, standard input and output go nowhere. */
  null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    (void)dup2(null, 0);
    (void)dup2(null, 1);
  }
  if (sock > 3)
    (void)syscall(SYS_close_range, 3u, (unsigned)sock - 1, 0u);
  (void)syscall(SYS_close_range, (unsigned)sock + 1, ~0u, 0u);

  for (;;) {
    req_t q;
    ssize_t n = recv(sock, &q, sizeof(q), 0);
    int reply;
    if (n < 0 && errno == EINTR)
      continue;
    if (n != (ssize_t)sizeof(q))
      break; /* the child closed its end: it has ended */
    reply = (q.op == REQ_COMMIT || q.op == REQ_DISCARD)
                ? do_request(q.op, q.index)
                : -EINVAL;
    while (send(sock, &reply, sizeof(reply), MSG_NOSIGNAL) < 0 &&
           errno == EINTR)
      ;
  }
  while (waitpid(child, &status, 0) < 0 && errno == EINTR)
    ;
  for (i = 0; i < ps.nouts; i++)
    (void)do_request(REQ_DISCARD, i);
  if (WIFSIGNALED(status)) {
    /* End as the child did, so that a shell sees the same signal. */
    int sig = WTERMSIG(status);
    sigset_t set;
    signal(sig, SIG_DFL);
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
    _exit(128 + sig);
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 3);
}

/* Fork the commit helper: the parent never returns from here. -> 0 in the
 * child, or a negative errno (nothing forked). */
static int start_helper(void) {
  int sv[2];
  pid_t pid;
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return -errno;
  fflush(NULL);
  pid = fork();
  if (pid < 0) {
    int e = -errno;
    close(sv[0]);
    close(sv[1]);
    return e;
  }
  if (pid > 0) {
    close(sv[1]);
    helper_run(sv[0], pid);
  }
  close(sv[0]);
  ps.helper_fd = sv[1];
  return 0;
}

/* ---------------------------------------------------------------------- */
/* The drop                                                               */

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
 * Landlock: files may be opened for writing beneath every top-level
 * directory but /proc. A process may always write its own memory through
 * /proc/self/mem (the kernel lets a thread group access itself whatever
 * its credentials), which would let a script rewrite the engine's code.
 * -> 0, or a negative errno (ENOSYS, EOPNOTSUPP: a kernel without
 * Landlock; the rest of the drop holds all the same).
 */
static int forbid_proc_writes(void) {
  struct landlock_ruleset_attr ra;
  struct dirent *e;
  DIR *d;
  int rs, r;

  memset(&ra, 0, sizeof(ra));
  ra.handled_access_fs = LANDLOCK_ACCESS_FS_WRITE_FILE;
  rs = (int)syscall(SYS_landlock_create_ruleset, &ra, sizeof(ra), 0);
  if (rs < 0)
    return -errno;
  d = opendir("/");
  if (d == NULL) {
    r = -errno;
    close(rs);
    return r;
  }
  while ((e = readdir(d)) != NULL) {
    struct landlock_path_beneath_attr pb;
    int fd;
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
        strcmp(e->d_name, "proc") == 0)
      continue;
    /* A top-level link (/bin -> usr/bin) is covered by its target. */
    fd = openat(dirfd(d), e->d_name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
      continue;
    pb.allowed_access = LANDLOCK_ACCESS_FS_WRITE_FILE;
    pb.parent_fd = fd;
    (void)syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb,
                  0);
    close(fd);
  }
  closedir(d);
  r = (int)syscall(SYS_landlock_restrict_self, rs, 0) == 0 ? 0 : -errno;
  close(rs);
  return r;
}

/* Becomes the configured user (root) or drops every capability (setcap).
 * -> 0, or -1 with a message in msg. */
static int drop(char *msg, size_t len) {
  struct __user_cap_data_struct caps[2];
  int have_caps, i, need_helper = 0;

  if (geteuid() == 0 || getuid() == 0) {
    struct passwd *pw;
    errno = 0;
    pw = getpwnam(ps.user);
    if (pw == NULL) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOMEM)
        snprintf(msg, len, "%s: cannot look up user '%s': %s",
                 sonde_err_name(-errno), ps.user, strerror(errno));
      else
        snprintf(msg, len, "--user: no such user '%s'", ps.user);
      return -1;
    }
    if (pw->pw_uid == 0) {
      snprintf(msg, len, "--user %s: refusing to run scripts as root",
               ps.user);
      return -1;
    }
    for (i = 0; i < ps.nouts; i++)
      if (ps.outs[i].tmp)
        need_helper = 1;
    if (need_helper) {
      int r = start_helper();
      if (r < 0) {
        snprintf(msg, len, "%s: cannot start the output helper: %s",
                 sonde_err_name(r), sonde_strerror(r));
        return -1;
      }
    }
    if (setgroups(0, NULL) != 0 ||
        setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) != 0 ||
        setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) != 0) {
      snprintf(msg, len, "%s: cannot switch to user '%s': %s",
               sonde_err_name(-errno), ps.user, strerror(errno));
      return -1;
    }
    /* The helper's death ends this process too (set after the uid change,
     * which clears it). */
    if (ps.helper_fd != -1)
      (void)prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
  }
  memset(caps, 0, sizeof(caps));
  have_caps = caps_get(caps) == 0 &&
              (caps[0].effective | caps[0].permitted | caps[1].effective |
               caps[1].permitted) != 0;
  if (have_caps && caps_clear() != 0) {
    snprintf(msg, len, "%s: cannot drop capabilities: %s",
             sonde_err_name(-errno), strerror(errno));
    return -1;
  }
  (void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  (void)forbid_proc_writes();
#if defined(__SANITIZE_ADDRESS__)
  /* Changing credentials made the process non-dumpable, and LeakSanitizer
   * must ptrace it at exit. Only in sanitizer builds: a dumpable process
   * could be ptraced by any other process of that user (raw sockets!). */
  (void)prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
#endif
  return 0;
}

/* sonde.core.drop_privileges() -> true, or nil, "ENAME: message", "ENAME".
 * Nothing to do (true) where main() configured no drop (the Lua module in
 * another program) or it happened already. */
int sonde__l_drop_privileges(lua_State *L) {
  static char msg[512];
  if (!ps.configured || ps.dropped) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (ps.failed || drop(msg, sizeof(msg)) != 0) {
    ps.failed = 1;
    const char *colon = strchr(msg, ':');
    lua_pushnil(L);
    lua_pushstring(L, msg);
    if (colon && msg[0] == 'E')
      lua_pushlstring(L, msg, (size_t)(colon - msg));
    else
      lua_pushliteral(L, "EPERM");
    return 3;
  }
  ps.dropped = 1;
  lua_pushboolean(L, 1);
  return 1;
}
