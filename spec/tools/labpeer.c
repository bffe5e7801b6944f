/*
 * labpeer - a small TCP/UDP peer for sonde's lab specs.
 *
 * It runs inside a lab namespace (ip netns exec NS build/labpeer ...) and
 * plays the far side of a case the kernel reports in its own way: a
 * listener, a peer that
 * echoes, resets or closes, a busy port, a connection left in TIME_WAIT,
 * an exhausted ephemeral port range, or a scripted client that reports
 * exactly what the kernel said.
 *
 * usage: labpeer MODE [-6] [-p PORT] [-a ADDR] [-n COUNT] [-t SECONDS]
 *                     [-d SECONDS] [-s SPORT] [-u] [-L] [-R] [-P] [ARGS]
 *
 * Server modes (TCP, bind ADDR (default any) : PORT, accept):
 *   listen        hold each connection open; read and discard
 *   echo          write back what is read
 *   reset         close each connection at once with SO_LINGER 0 (an RST);
 *                 the client's next recv/send gets ECONNRESET.  At once
 *                 means the RST can beat the client's own look at its
 *                 non-blocking connect: Linux then reports ECONNRESET as
 *                 the connect's result (SO_ERROR).  -d 0.2 makes the
 *                 client see the connect succeed and then the reset.
 *   close         close each connection at once (a FIN); a client that then
 *                 writes twice gets EPIPE on the second write
 *   banner TEXT   write TEXT (as given, no newline added), then hold open
 *   -n COUNT      accept COUNT connections, then stop accepting; end when
 *                 the last of them is closed
 *   -d SECONDS    reset / close / banner this long after accepting
 *                 (reading and discarding meanwhile); udp-echo: echo each
 *                 datagram this long after it came
 * Other modes:
 *   hold-port     make PORT busy: bind (and listen, unless -L) and never
 *                 accept; -u binds a UDP socket instead; -R sets
 *                 SO_REUSEADDR, -P SO_REUSEPORT (neither by default, so a
 *                 later bind of the port fails with EADDRINUSE)
 *   udp-echo      bind UDP PORT, echo datagrams (-n COUNT: then end)
 *   connect ADDR PORT
 *                 open COUNT (-n, default 1) TCP connections and hold them
 *                 (used to exhaust a tiny ip_local_port_range); -a binds the
 *                 local address, -s SPORT binds source ports SPORT, SPORT+1..
 *                 Prints "connected LOCAL REMOTE" for each.
 *   time-wait ADDR PORT
 *                 connect (from -s SPORT if given), close first (our FIN),
 *                 wait for the peer's FIN: the local port is left in
 *                 TIME_WAIT (60 s) when labpeer prints "ready" and ends.
 *                 The peer must close on EOF (labpeer listen does).
 *   client ADDR PORT [STEP...]
 *                 connect (TCP, or UDP with -u) and run the steps in order,
 *                 printing one line per step: what the kernel reported.
 *                   send=TEXT   "send N" or "send ENAME"
 *                   recv[=SEC]  "recv N DATA" (escaped), "recv EOF",
 *                               "recv ENAME" or "recv timeout" (default 2 s)
 *                   sleep=SEC   nothing printed
 *                   shut        shutdown(SHUT_WR); "shut" or "shut ENAME"
 *                 Prints "connected LOCAL REMOTE" first and "done" last.
 *   flow-label ADDR LABEL
 *                 hold an exclusive lease (IPV6_FLOWLABEL_MGR, share
 *                 IPV6_FL_S_EXCL) of IPv6 flow label LABEL (decimal)
 *                 towards ADDR; prints "ready". Once a socket of
 *                 the namespace holds an exclusive lease, Linux checks
 *                 every flow label sent against the sender's leases.
 *
 * Addresses: servers, hold-port and udp-echo bind -a ADDR (default 0.0.0.0,
 * or :: with -6; an IPv6 socket is IPV6_V6ONLY).  Client modes take the
 * family of ADDR; -a and -s bind their local side (-R / -P set SO_REUSEADDR
 * / SO_REUSEPORT before that bind).
 *
 * Once its socket is listening or bound, a server, hold-port and udp-echo
 * print "bound ADDR:PORT" and then "ready" on stdout (flushed); connect and
 * time-wait print their "connected ..." lines and then "ready"; client
 * prints no "ready".  Every mode ends by itself after -t SECONDS (default
 * 30; fractions allowed), and on SIGTERM or SIGINT.  SIGPIPE is ignored;
 * writes use MSG_NOSIGNAL.  Errors go to stderr as
 * "labpeer: WHAT ADDR: ENAME: message".
 *
 * Exit codes:
 *   0  finished: the time ran out, COUNT was reached, a signal asked to stop,
 *      or the client's steps ran (their errors are output, not failures)
 *   2  usage error
 *   3  setup failed: socket, bind, listen or a socket option
 *   4  connect failed (connect, time-wait, client; also a time-out)
 *   5  I/O error during the session (poll, accept, or the peer of time-wait
 *      never closed)
 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <linux/in6.h> /* struct in6_flowlabel_req */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define EXIT_OK 0
#define EXIT_USAGE 2
#define EXIT_SETUP 3
#define EXIT_CONNECT 4
#define EXIT_IO 5

enum mode {
  M_LISTEN, M_ECHO, M_RESET, M_CLOSE, M_BANNER, M_HOLD_PORT, M_UDP_ECHO,
  M_CONNECT, M_TIME_WAIT, M_CLIENT, M_FLOW_LABEL
};

static const struct { const char *name; enum mode mode; } modes[] = {
  { "listen", M_LISTEN }, { "echo", M_ECHO }, { "reset", M_RESET },
  { "close", M_CLOSE }, { "banner", M_BANNER }, { "hold-port", M_HOLD_PORT },
  { "udp-echo", M_UDP_ECHO }, { "connect", M_CONNECT },
  { "time-wait", M_TIME_WAIT }, { "client", M_CLIENT },
  { "flow-label", M_FLOW_LABEL },
};

struct opts {
  enum mode mode;
  int v6;
  int port;            /* -p; -1 when not given */
  const char *addr;    /* -a */
  long count;          /* -n; 0 = unlimited (servers), 1 (connect) */
  double seconds;      /* -t */
  double delay;        /* -d: reset/close/banner this long after accept;
                          udp-echo: echo this long after receiving */
  int sport;           /* -s; 0 = kernel's choice */
  int udp, no_listen, reuseaddr, reuseport;
  const char *text;    /* banner TEXT */
  const char *raddr;   /* connect/time-wait/client ADDR */
  int rport;           /*                     ... PORT */
  char **steps;        /* client steps */
  int nsteps;
};

static volatile sig_atomic_t stop_requested;
static double deadline;

static void on_signal(int sig) {
  (void) sig;
  stop_requested = 1;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* Milliseconds until `until` (never negative, at most a day). */
static int ms_until(double until) {
  double left = (until - now()) * 1000.0;
  if (left <= 0) return 0;
  if (left > 86400000.0) return 86400000;
  return (int) left + 1;
}

static const char *errname(int err) {
  const char *name = strerrorname_np(err);
  return name ? name : "E?";
}

static void report(const char *what, const char *where, int err) {
  fprintf(stderr, "labpeer: %s%s%s: %s: %s\n", what, where ? " " : "",
          where ? where : "", errname(err), strerror(err));
}

static void close_fd(int *fd) {
  if (*fd != -1) {
    close(*fd);
    *fd = -1;
  }
}

static void usage(const char *msg) {
  if (msg) fprintf(stderr, "labpeer: %s\n", msg);
  fprintf(stderr,
          "usage: labpeer MODE [-6] [-p PORT] [-a ADDR] [-n COUNT] [-t SECONDS]\n"
          "               [-d SECONDS] [-s SPORT] [-u] [-L] [-R] [-P] [ARGS]\n"
          "modes: listen, echo, reset, close, banner TEXT, hold-port, udp-echo,\n"
          "       connect ADDR PORT, time-wait ADDR PORT, client ADDR PORT [STEP...]\n"
          "(see the comment at the top of spec/tools/labpeer.c)\n");
  exit(EXIT_USAGE);
}

static long parse_long(const char *s, long lo, long hi, const char *what) {
  char *end;
  long v;
  errno = 0;
  v = strtol(s, &end, 10);
  if (errno || *s == '\0' || *end != '\0' || v < lo || v > hi) {
    fprintf(stderr, "labpeer: invalid %s '%s' (%ld..%ld)\n", what, s, lo, hi);
    exit(EXIT_USAGE);
  }
  return v;
}

static double parse_seconds(const char *s, const char *what) {
  char *end;
  double v;
  errno = 0;
  v = strtod(s, &end);
  if (errno || *s == '\0' || *end != '\0' || !(v >= 0) || v > 86400) {
    fprintf(stderr, "labpeer: invalid %s '%s' (seconds, 0..86400)\n", what, s);
    exit(EXIT_USAGE);
  }
  return v;
}

/* Fills `ss` from a numeric address (any when NULL) and a port. */
static socklen_t make_addr(struct sockaddr_storage *ss, int v6, const char *addr, int port) {
  memset(ss, 0, sizeof *ss);
  if (v6) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((unsigned short) port);
    s6->sin6_addr = in6addr_any;
    if (addr && inet_pton(AF_INET6, addr, &s6->sin6_addr) != 1) {
      fprintf(stderr, "labpeer: not an IPv6 address: '%s'\n", addr);
      exit(EXIT_USAGE);
    }
    return sizeof *s6;
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *) ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((unsigned short) port);
    s4->sin_addr.s_addr = htonl(INADDR_ANY);
    if (addr && inet_pton(AF_INET, addr, &s4->sin_addr) != 1) {
      fprintf(stderr, "labpeer: not an IPv4 address: '%s'\n", addr);
      exit(EXIT_USAGE);
    }
    return sizeof *s4;
  }
}

/* "198.18.0.1:80" or "[2001:db8::1]:80" */
static const char *fmt_addr(const struct sockaddr_storage *ss, char *buf, size_t len) {
  char host[INET6_ADDRSTRLEN];
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *) ss;
    inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
    snprintf(buf, len, "[%s]:%u", host, ntohs(s6->sin6_port));
  } else {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *) ss;
    inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
    snprintf(buf, len, "%s:%u", host, ntohs(s4->sin_port));
  }
  return buf;
}

static const char *sock_name(int fd, int peer, char *buf, size_t len) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  int rc = peer ? getpeername(fd, (struct sockaddr *) &ss, &sl)
                : getsockname(fd, (struct sockaddr *) &ss, &sl);
  if (rc != 0) {
    snprintf(buf, len, "?");
    return buf;
  }
  return fmt_addr(&ss, buf, len);
}

static void say(const char *line) {
  fputs(line, stdout);
  fputc('\n', stdout);
  fflush(stdout);
}

static void say_bound(int fd) {
  char buf[80];
  printf("bound %s\n", sock_name(fd, 0, buf, sizeof buf));
  say("ready");
}

static void say_connected(int fd) {
  char l[80], r[80];
  printf("connected %s %s\n", sock_name(fd, 0, l, sizeof l), sock_name(fd, 1, r, sizeof r));
  fflush(stdout);
}

/* -> 0, or -1 with errno kept as setsockopt left it (after reporting). */
static int set_int_opt(int fd, int level, int name, int value, const char *what) {
  if (setsockopt(fd, level, name, &value, sizeof value) != 0) {
    int e = errno;
    report(what, NULL, e);
    errno = e;
    return -1;
  }
  return 0;
}

/* A socket bound to ADDR:PORT (listening for TCP unless `listen_it` is 0).
 * -> fd (owned by the caller), or exits with EXIT_SETUP. */
static int open_bound(const struct opts *o, int type, int listen_it, int reuseaddr) {
  struct sockaddr_storage ss;
  socklen_t sl = make_addr(&ss, o->v6, o->addr, o->port);
  char where[80];
  int fd = socket(o->v6 ? AF_INET6 : AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd == -1) {
    report("socket", NULL, errno);
    exit(EXIT_SETUP);
  }
  if ((reuseaddr && set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1, "setsockopt SO_REUSEADDR")) ||
      (o->reuseport && set_int_opt(fd, SOL_SOCKET, SO_REUSEPORT, 1, "setsockopt SO_REUSEPORT")) ||
      (o->v6 && set_int_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1, "setsockopt IPV6_V6ONLY"))) {
    close_fd(&fd);
    exit(EXIT_SETUP);
  }
  if (bind(fd, (struct sockaddr *) &ss, sl) != 0) {
    report("bind", fmt_addr(&ss, where, sizeof where), errno);
    close_fd(&fd);
    exit(EXIT_SETUP);
  }
  if (listen_it && listen(fd, 128) != 0) {
    report("listen", fmt_addr(&ss, where, sizeof where), errno);
    close_fd(&fd);
    exit(EXIT_SETUP);
  }
  return fd;
}

/* Writes all of buf (bounded by the deadline).  -> 0, or a positive errno. */
static int send_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n > 0) {
      buf += n;
      len -= (size_t) n;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd p = { .fd = fd, .events = POLLOUT };
      if (stop_requested || now() >= deadline) return ETIMEDOUT;
      if (poll(&p, 1, ms_until(deadline)) < 0 && errno != EINTR) return errno;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return n < 0 ? errno : EIO;
    }
  }
  return 0;
}

/* Reads what is waiting, without blocking, and drops it. */
static void drain(int fd) {
  char buf[4096];
  int i;
  for (i = 0; i < 64; i++)
    if (recv(fd, buf, sizeof buf, MSG_DONTWAIT) <= 0) break;
}

/* ---- servers ---------------------------------------------------------- */

/* Open connections (servers and connect mode).  `due` is when a delayed
 * action (-d: reset, close, banner) is to happen; 0 when none is pending. */
static struct conn { int fd; double due; } conns[MAX_CONNS];
static int nconns;

static void add_conn(int fd, double due) {
  if (nconns == MAX_CONNS) {
    fprintf(stderr, "labpeer: more than %d connections; closing the new one\n", MAX_CONNS);
    close(fd);
    return;
  }
  conns[nconns].fd = fd;
  conns[nconns].due = due;
  nconns++;
}

/* Closes connection i; the last one takes its place. */
static void drop_conn(int i) {
  close_fd(&conns[i].fd);
  conns[i] = conns[--nconns];
  conns[nconns].fd = -1;
}

static void close_all_conns(void) {
  while (nconns > 0) drop_conn(nconns - 1);
}

/* Handles a readable connection; -> 0 to keep it, -1 to drop it. */
static int serve_readable(const struct opts *o, int fd) {
  char buf[4096];
  ssize_t n = recv(fd, buf, sizeof buf, 0);
  if (n == 0) return -1;
  if (n < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
  if (o->mode == M_ECHO && send_all(fd, buf, (size_t) n) != 0) return -1;
  return 0;
}

/* The mode's action on a new connection (at once, or -d seconds later).
 * -> 0 to keep the connection open, -1 when it was closed here (the fd is
 * then closed; the caller only forgets it). */
static int act(const struct opts *o, int fd) {
  switch (o->mode) {
  case M_RESET: {
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0)
      report("setsockopt SO_LINGER", NULL, errno);
    close(fd);
    return -1;
  }
  case M_CLOSE:
    /* unread data at close() would turn our FIN into an RST */
    drain(fd);
    close(fd);
    return -1;
  case M_BANNER: {
    int err = send_all(fd, o->text, strlen(o->text));
    if (err) {
      report("send banner", NULL, err);
      close(fd);
      return -1;
    }
    return 0;
  }
  default:
    return 0;
  }
}

static int run_server(const struct opts *o) {
  int lfd = open_bound(o, SOCK_STREAM, 1, 1);
  long accepted = 0;
  struct pollfd pfds[MAX_CONNS + 1];
  int rc = EXIT_OK;

  say_bound(lfd);
  while (!stop_requested && now() < deadline) {
    int n = 0, i, base, ready;
    double wake = deadline;
    if (lfd == -1 && nconns == 0) break;      /* COUNT served and all closed */
    if (lfd != -1) pfds[n++] = (struct pollfd) { .fd = lfd, .events = POLLIN };
    base = n;
    for (i = 0; i < nconns; i++) {
      pfds[n++] = (struct pollfd) { .fd = conns[i].fd, .events = POLLIN };
      if (conns[i].due > 0 && conns[i].due < wake) wake = conns[i].due;
    }
    ready = poll(pfds, (nfds_t) n, ms_until(wake));
    if (ready < 0) {
      if (errno == EINTR) continue;
      report("poll", NULL, errno);
      rc = EXIT_IO;
      break;
    }
    /* connections first, from the end, so that dropping one (the last takes
     * its place) keeps the indexes still to visit valid */
    for (i = n - 1; i >= base; i--) {
      struct conn *c = &conns[i - base];
      if (c->due > 0 && now() >= c->due) {
        c->due = 0;
        if (act(o, c->fd) != 0) {
          c->fd = -1;                         /* closed by act() */
          drop_conn(i - base);
          continue;
        }
      }
      if (pfds[i].revents && serve_readable(o, c->fd) != 0) drop_conn(i - base);
    }
    if (base == 1 && (pfds[0].revents & POLLIN)) {
      int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd == -1) {
        /* ECONNABORTED: reset after the handshake, before accept() took
         * it - accept again */
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
          report("accept", NULL, errno);
          rc = EXIT_IO;
          break;
        }
        continue;
      }
      accepted++;
      if (o->delay > 0)
        add_conn(fd, now() + o->delay);
      else if (act(o, fd) == 0)
        add_conn(fd, 0);
      if (o->count > 0 && accepted >= o->count) close_fd(&lfd);
    }
  }
  close_all_conns();
  close_fd(&lfd);
  return rc;
}

static int run_hold_port(const struct opts *o) {
  int fd = open_bound(o, o->udp ? SOCK_DGRAM : SOCK_STREAM, !o->udp && !o->no_listen, o->reuseaddr);
  say_bound(fd);
  while (!stop_requested && now() < deadline) poll(NULL, 0, ms_until(deadline));
  close_fd(&fd);
  return EXIT_OK;
}

static int run_udp_echo(const struct opts *o) {
  int fd = open_bound(o, SOCK_DGRAM, 0, 1);
  long served = 0;
  say_bound(fd);
  while (!stop_requested && now() < deadline && (o->count == 0 || served < o->count)) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    char buf[65536];
    struct sockaddr_storage from;
    socklen_t fl = sizeof from;
    ssize_t n;
    if (poll(&p, 1, ms_until(deadline)) <= 0) continue;
    n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *) &from, &fl);
    if (n < 0) continue;            /* e.g. ECONNREFUSED from an earlier reply */
    served++;
    if (o->delay > 0) {             /* -d: a slow peer (replies that come late) */
      struct timespec ts = { (time_t) o->delay, (long) ((o->delay - (time_t) o->delay) * 1e9) };
      while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop_requested) {}
    }
    if (sendto(fd, buf, (size_t) n, MSG_NOSIGNAL, (struct sockaddr *) &from, fl) < 0)
      report("sendto", NULL, errno);
  }
  close_fd(&fd);
  return EXIT_OK;
}

/* ---- clients ---------------------------------------------------------- */

/* Connects to raddr:rport (from addr:sport when given) within the deadline.
 * -> fd owned by the caller, or -1 with *err set (the errno). */
static int connect_to(const struct opts *o, int type, int sport, int *err) {
  struct sockaddr_storage rs, ls;
  socklen_t rl, ll;
  int v6 = strchr(o->raddr, ':') != NULL;
  int fd;
  rl = make_addr(&rs, v6, o->raddr, o->rport);
  fd = socket(v6 ? AF_INET6 : AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd == -1) {
    *err = errno;
    return -1;
  }
  if (o->addr || sport) {
    ll = make_addr(&ls, v6, o->addr, sport);
    if ((o->reuseaddr && set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1, "setsockopt SO_REUSEADDR")) ||
        (o->reuseport && set_int_opt(fd, SOL_SOCKET, SO_REUSEPORT, 1, "setsockopt SO_REUSEPORT")) ||
        bind(fd, (struct sockaddr *) &ls, ll) != 0) {
      *err = errno;
      close_fd(&fd);
      return -1;
    }
  }
  if (connect(fd, (struct sockaddr *) &rs, rl) != 0) {
    int e = errno;
    if (e != EINPROGRESS) {
      *err = e;
      close_fd(&fd);
      return -1;
    }
    for (;;) {
      struct pollfd p = { .fd = fd, .events = POLLOUT };
      int r = poll(&p, 1, ms_until(deadline));
      socklen_t el = sizeof e;
      if (r < 0 && errno == EINTR && !stop_requested) continue;
      if (r <= 0) {
        *err = r == 0 ? ETIMEDOUT : errno;
        close_fd(&fd);
        return -1;
      }
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0) e = errno;
      if (e != 0) {
        *err = e;
        close_fd(&fd);
        return -1;
      }
      break;
    }
  }
  return fd;
}

static void connect_failed(const struct opts *o, int err) {
  char where[80];
  struct sockaddr_storage rs;
  make_addr(&rs, strchr(o->raddr, ':') != NULL, o->raddr, o->rport);
  report("connect", fmt_addr(&rs, where, sizeof where), err);
}

static int run_connect(const struct opts *o) {
  long count = o->count > 0 ? o->count : 1, i;
  struct pollfd pfds[MAX_CONNS];
  int rc = EXIT_OK;

  if (count > MAX_CONNS) usage("connect: -n is at most 1024");
  for (i = 0; i < count; i++) {
    int err = 0;
    int fd = connect_to(o, SOCK_STREAM, o->sport ? o->sport + (int) i : 0, &err);
    if (fd == -1) {
      fprintf(stderr, "labpeer: connection %ld of %ld failed\n", i + 1, count);
      connect_failed(o, err);
      close_all_conns();
      return EXIT_CONNECT;
    }
    say_connected(fd);
    add_conn(fd, 0);
  }
  say("ready");
  while (!stop_requested && now() < deadline && nconns > 0) {
    int j, r;
    for (j = 0; j < nconns; j++) pfds[j] = (struct pollfd) { .fd = conns[j].fd, .events = POLLIN };
    r = poll(pfds, (nfds_t) nconns, ms_until(deadline));
    if (r < 0 && errno != EINTR) {
      report("poll", NULL, errno);
      rc = EXIT_IO;
      break;
    }
    for (j = nconns - 1; r > 0 && j >= 0; j--) {
      char buf[4096];
      ssize_t n;
      if (!pfds[j].revents) continue;
      n = recv(conns[j].fd, buf, sizeof buf, 0);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) drop_conn(j);
    }
  }
  close_all_conns();
  return rc;
}

static int run_time_wait(const struct opts *o) {
  int err = 0;
  int fd = connect_to(o, SOCK_STREAM, o->sport, &err);
  int rc = EXIT_IO;
  if (fd == -1) {
    connect_failed(o, err);
    return EXIT_CONNECT;
  }
  say_connected(fd);
  /* we close first, so the TIME_WAIT is ours */
  if (shutdown(fd, SHUT_WR) != 0) {
    report("shutdown", NULL, errno);
    close_fd(&fd);
    return EXIT_IO;
  }
  while (!stop_requested && now() < deadline) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    char buf[4096];
    ssize_t n;
    if (poll(&p, 1, ms_until(deadline)) <= 0) continue;
    n = recv(fd, buf, sizeof buf, 0);
    if (n == 0) {
      rc = EXIT_OK;
      break;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      report("recv", NULL, errno);
      break;
    }
  }
  if (rc != EXIT_OK) fprintf(stderr, "labpeer: time-wait: the peer never closed\n");
  close_fd(&fd);
  if (rc == EXIT_OK) say("ready");
  return rc;
}

/* "recv 5 hello" with bytes outside printable ASCII as \n, \r, \t, \\, \xHH */
static void print_data(const char *buf, ssize_t n) {
  ssize_t i;
  printf("recv %zd ", n);
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char) buf[i];
    if (c == '\n') fputs("\\n", stdout);
    else if (c == '\r') fputs("\\r", stdout);
    else if (c == '\t') fputs("\\t", stdout);
    else if (c == '\\') fputs("\\\\", stdout);
    else if (c < 32 || c > 126) printf("\\x%02x", c);
    else fputc(c, stdout);
  }
  fputc('\n', stdout);
  fflush(stdout);
}

static void client_recv(int fd, double wait) {
  double until = now() + wait;
  char buf[4096];
  if (until > deadline) until = deadline;
  for (;;) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    ssize_t n;
    int r = poll(&p, 1, ms_until(until));
    if (r < 0 && errno == EINTR && !stop_requested) continue;
    if (r <= 0) {
      say("recv timeout");
      return;
    }
    n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      print_data(buf, n);
    } else if (n == 0) {
      say("recv EOF");
    } else if (errno == EAGAIN || errno == EINTR) {
      continue;
    } else {
      printf("recv %s\n", errname(errno));
      fflush(stdout);
    }
    return;
  }
}

static int run_client(const struct opts *o) {
  int err = 0, i;
  int fd = connect_to(o, o->udp ? SOCK_DGRAM : SOCK_STREAM, o->sport, &err);
  if (fd == -1) {
    printf("connect %s\n", errname(err));
    fflush(stdout);
    connect_failed(o, err);
    return EXIT_CONNECT;
  }
  say_connected(fd);
  for (i = 0; i < o->nsteps && !stop_requested; i++) {
    const char *s = o->steps[i];
    if (strncmp(s, "send=", 5) == 0) {
      ssize_t n = send(fd, s + 5, strlen(s + 5), MSG_NOSIGNAL);
      if (n >= 0) printf("send %zd\n", n);
      else printf("send %s\n", errname(errno));
      fflush(stdout);
    } else if (strcmp(s, "recv") == 0) {
      client_recv(fd, 2.0);
    } else if (strncmp(s, "recv=", 5) == 0) {
      client_recv(fd, parse_seconds(s + 5, "recv wait"));
    } else if (strncmp(s, "sleep=", 6) == 0) {
      double until = now() + parse_seconds(s + 6, "sleep");
      if (until > deadline) until = deadline;
      while (!stop_requested && now() < until) poll(NULL, 0, ms_until(until));
    } else if (strcmp(s, "shut") == 0) {
      if (shutdown(fd, SHUT_WR) == 0) {
        say("shut");
      } else {
        printf("shut %s\n", errname(errno));
        fflush(stdout);
      }
    } else {
      fprintf(stderr, "labpeer: unknown client step '%s'\n", s);
      close_fd(&fd);
      return EXIT_USAGE;
    }
  }
  close_fd(&fd);
  say("done");
  return EXIT_OK;
}

/* ---- flow-label --------------------------------------------------------- */

static int run_flow_label(const struct opts *o) {
  struct in6_flowlabel_req req;
  int fd;

  memset(&req, 0, sizeof req);
  if (inet_pton(AF_INET6, o->raddr, &req.flr_dst) != 1)
    usage("flow-label needs an IPv6 ADDR");
  req.flr_label = htonl((uint32_t) o->rport);
  req.flr_action = IPV6_FL_A_GET;
  req.flr_flags = IPV6_FL_F_CREATE | IPV6_FL_F_EXCL;
  req.flr_share = IPV6_FL_S_EXCL;
  fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    report("socket", o->raddr, errno);
    return EXIT_SETUP;
  }
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_FLOWLABEL_MGR, &req, sizeof req) < 0) {
    report("setsockopt(IPV6_FLOWLABEL_MGR)", o->raddr, errno);
    close_fd(&fd);
    return EXIT_SETUP;
  }
  say("ready");
  while (!stop_requested && now() < deadline) poll(NULL, 0, ms_until(deadline));
  close_fd(&fd);
  return EXIT_OK;
}

/* ---- main ------------------------------------------------------------- */

static void parse(int argc, char **argv, struct opts *o) {
  int c, i, npos;
  char **pos;
  size_t k;

  memset(o, 0, sizeof *o);
  o->port = -1;
  o->seconds = 30;
  while ((c = getopt(argc, argv, "6p:a:n:t:d:s:uLRPh")) != -1) {
    switch (c) {
    case '6': o->v6 = 1; break;
    case 'p': o->port = (int) parse_long(optarg, 0, 65535, "port (-p)"); break;
    case 'a': o->addr = optarg; break;
    case 'n': o->count = parse_long(optarg, 1, 1000000, "count (-n)"); break;
    case 't': o->seconds = parse_seconds(optarg, "time (-t)"); break;
    case 'd': o->delay = parse_seconds(optarg, "delay (-d)"); break;
    case 's': o->sport = (int) parse_long(optarg, 1, 65535, "source port (-s)"); break;
    case 'u': o->udp = 1; break;
    case 'L': o->no_listen = 1; break;
    case 'R': o->reuseaddr = 1; break;
    case 'P': o->reuseport = 1; break;
    case 'h': usage(NULL); break;
    default: usage(NULL);
    }
  }
  pos = argv + optind;
  npos = argc - optind;
  if (npos < 1) usage("no mode given");
  for (k = 0; k < sizeof modes / sizeof modes[0]; k++)
    if (strcmp(pos[0], modes[k].name) == 0) break;
  if (k == sizeof modes / sizeof modes[0]) usage("unknown mode");
  o->mode = modes[k].mode;
  if (o->addr && strchr(o->addr, ':')) o->v6 = 1;
  pos++;
  npos--;

  switch (o->mode) {
  case M_CONNECT: case M_TIME_WAIT: case M_CLIENT:
    if (npos < 2) usage("this mode needs ADDR PORT");
    o->raddr = pos[0];
    o->rport = (int) parse_long(pos[1], 1, 65535, "port");
    if (o->addr && (strchr(o->addr, ':') != NULL) != (strchr(o->raddr, ':') != NULL))
      usage("-a and ADDR are of different address families");
    if (o->mode == M_CLIENT) {
      o->steps = pos + 2;
      o->nsteps = npos - 2;
    } else if (npos != 2) {
      usage("too many arguments");
    }
    if (o->mode == M_TIME_WAIT && o->count) usage("time-wait takes no -n");
    break;
  case M_FLOW_LABEL:
    if (npos != 2) usage("flow-label needs ADDR LABEL");
    o->raddr = pos[0];
    o->rport = (int) parse_long(pos[1], 1, 0xfffff, "flow label");
    break;
  case M_BANNER:
    if (npos != 1) usage("banner needs TEXT");
    o->text = pos[0];
    if (o->port < 0) usage("this mode needs -p PORT");
    break;
  default:
    if (npos != 0) usage("too many arguments");
    if (o->port < 0) usage("this mode needs -p PORT");
    break;
  }
  for (i = 0; i < o->nsteps; i++) {
    const char *s = o->steps[i];
    if (strncmp(s, "send=", 5) && strcmp(s, "recv") && strncmp(s, "recv=", 5) &&
        strncmp(s, "sleep=", 6) && strcmp(s, "shut"))
      usage("unknown client step (send=TEXT, recv[=SEC], sleep=SEC, shut)");
  }
}

int main(int argc, char **argv) {
  struct opts o;
  struct sigaction sa;

  parse(argc, argv, &o);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);
  sa.sa_handler = on_signal;        /* no SA_RESTART: poll returns EINTR */
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  deadline = now() + o.seconds;
  for (int i = 0; i < MAX_CONNS; i++) conns[i].fd = -1;

  switch (o.mode) {
  case M_LISTEN: case M_ECHO: case M_RESET: case M_CLOSE: case M_BANNER:
    return run_server(&o);
  case M_HOLD_PORT: return run_hold_port(&o);
  case M_UDP_ECHO: return run_udp_echo(&o);
  case M_CONNECT: return run_connect(&o);
  case M_TIME_WAIT: return run_time_wait(&o);
  case M_CLIENT: return run_client(&o);
  case M_FLOW_LABEL: return run_flow_label(&o);
  }
  return EXIT_USAGE;
}
