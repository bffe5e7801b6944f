/* errors.c - the errno taxonomy and the outcome vocabulary, from one map. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct {
  int err;
  const char *name;
  const char *msg;
  sonde_status_t status;
} errent_t;

static const errent_t errmap[] = {
#define XX(name, msg, st) {-name, #name, msg, SONDE_STATUS_##st},
    SONDE_ERRNO_MAP(XX)
#undef XX
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const errent_t *lookup(int err) {
  size_t i;
  if (err > 0)
    err = -err;
  for (i = 0; i < NELEM(errmap); i++)
    if (errmap[i].err == err)
      return &errmap[i];
  return NULL;
}

const char *sonde_err_name(int err) {
  const errent_t *e = lookup(err);
  const char *name;
  if (e)
    return e->name;
  /* An errno outside the map still gets its own name, never "error". */
  name = err ? strerrorname_np(err < 0 ? -err : err) : NULL;
  return name ? name : "UNKNOWN";
}

const char *sonde_strerror(int err) {
  const errent_t *e = lookup(err);
  if (e)
    return e->msg;
  return err ? strerror(err < 0 ? -err : err) : "success";
}

sonde_status_t sonde_err_status(int err) {
  const errent_t *e = lookup(err);
  return e ? e->status : SONDE_STATUS_FAILED;
}

int sonde_err_from_name(const char *name) {
  size_t i;
  for (i = 0; name && i < NELEM(errmap); i++)
    if (strcmp(errmap[i].name, name) == 0)
      return errmap[i].err;
  return 0;
}

/* The build passes the version (the Makefile's VERSION) as
 * -DSONDE_VERSION_STRING: it is written down once. */
#ifndef SONDE_VERSION_STRING
#error "build with -DSONDE_VERSION_STRING='\"M.m.p\"' (make passes it)"
#endif

const char *sonde_version(void) { return SONDE_VERSION_STRING; }

const char *sonde_status_name(sonde_status_t st) {
  static const char *names[] = {"reply", "timeout", "skipped", "failed"};
  return (unsigned)st < NELEM(names) ? names[st] : "unknown";
}

/* The name column of a map, as an array in enum order. */
#define NAME_OF(name, str) str,
static const char *const kind_names[] = {SONDE_KIND_MAP(NAME_OF)};
static const char *const unreach_names[] = {SONDE_UNREACH_MAP(NAME_OF)};
#undef NAME_OF
#define NAME_OF(NAME, name, value) #name,
static const char *const proto_names[] = {SONDE_PROTO_MAP(NAME_OF)};
#undef NAME_OF

const char *sonde_kind_name(sonde_kind_t kind) {
  return (unsigned)kind < NELEM(kind_names) ? kind_names[kind] : "unknown";
}

const char *sonde_unreach_name(sonde_unreach_t code) {
  return (unsigned)code < NELEM(unreach_names) ? unreach_names[code]
                                                : "unknown";
}

const char *sonde_proto_name(sonde_proto_t proto) {
  unsigned i = (unsigned)proto - SONDE_PROTO_ICMP;
  return i < NELEM(proto_names) ? proto_names[i] : "unknown";
}

/* The interface index a zone names (RFC 4007 11.2: "eth0" or "2"), or 0
 * when there is no such interface in this network namespace. */
static unsigned zone_index(const char *zone) {
  char *end;
  unsigned long n;
  if (*zone >= '0' && *zone <= '9') {
    errno = 0;
    n = strtoul(zone, &end, 10);
    return *end == '\0' && errno == 0 && n <= 0xffffffffUL ? (unsigned)n : 0;
  }
  return if_nametoindex(zone);
}

/* An IPv6 address may carry a zone ("fe80::1%eth0"): it becomes the
 * sockaddr's scope id, which sendto()/connect() use to pick the link a
 * link-local address lives on. An unknown zone is EINVAL too: the
 * address cannot be reached as written. */
int sonde_addr_parse(const char *text, uint16_t port,
                     struct sockaddr_storage *out) {
  memset(out, 0, sizeof(*out));
  if (text == NULL)
    return SONDE_EINVAL;
  if (strchr(text, ':')) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
    const char *pct = strchr(text, '%');
    char buf[INET6_ADDRSTRLEN];
    unsigned scope = 0;
    if (pct != NULL) {
      size_t n = (size_t)(pct - text);
      if (n >= sizeof(buf) || pct[1] == '\0' || strlen(pct + 1) >= IF_NAMESIZE)
        return SONDE_EINVAL;
      memcpy(buf, text, n);
      buf[n] = '\0';
      scope = zone_index(pct + 1);
      if (scope == 0)
        return SONDE_EINVAL;
      text = buf;
    }
    if (inet_pton(AF_INET6, text, &s6->sin6_addr) != 1)
      return SONDE_EINVAL;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    s6->sin6_scope_id = scope;
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)out;
    if (inet_pton(AF_INET, text, &s4->sin_addr) != 1)
      return SONDE_EINVAL;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
  }
  return 0;
}

const char *sonde_addr_format(const struct sockaddr_storage *addr, char *buf,
                              size_t len) {
  const void *bytes = sonde__addr_bytes(addr);
  if (len == 0)
    return buf;
  buf[0] = '\0';
  if (bytes == NULL || !inet_ntop(addr->ss_family, bytes, buf, (socklen_t)len))
    buf[0] = '\0';
  return buf;
}
