/*
 * scenario.c - loading a sonde-netsim scenario (JSON) and checking every
 * field of it. The format is documented in `sonde-netsim --help` and in
 * spec/fixtures/scenarios/. Strict: an unknown field, a duplicate key, a
 * wrong type or a value out of range is an error whose message starts with
 * the field's JSON path ("hops[2].delay_ms: expected a non-negative
 * number (got -3)").
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "netsim.h"

typedef struct {
  char *err;
  size_t errlen;
  int af;
} ctx_t;

#define PATH_MAX_LEN 64

/* printf into the error buffer; always returns -1. */
static int fail(ctx_t *c, const char *path, const char *fmt, ...) {
  va_list ap;
  int n = snprintf(c->err, c->errlen, "%s: ", path);
  va_start(ap, fmt);
  if (n >= 0 && (size_t)n < c->errlen)
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
  va_end(ap);
  return -1;
}

/* A short rendering of a JSON value for messages. */
static const char *shown(const json_t *v, char *buf, size_t len) {
  char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
  if (s == NULL) {
    snprintf(buf, len, "?");
    return buf;
  }
  if (strlen(s) > 40)
    snprintf(buf, len, "%.37s...", s);
  else
    snprintf(buf, len, "%s", s);
  free(s);
  return buf;
}

/* base.key into out (PATH_MAX_LEN bytes; the longest real path,
 * "hops[254].mpls[15].label", is far shorter). */
static void join(char *out, const char *base, const char *key) {
  int n = base[0] ? snprintf(out, PATH_MAX_LEN, "%s.%s", base, key)
                  : snprintf(out, PATH_MAX_LEN, "%s", key);
  if (n < 0 || n >= PATH_MAX_LEN)
    out[PATH_MAX_LEN - 1] = '\0';
}

/* Every key of obj must be in allowed (NULL-terminated). */
static int only_known(ctx_t *c, const json_t *obj, const char *base,
                      const char *const *allowed) {
  const char *key;
  json_t *v;
  char path[PATH_MAX_LEN];

  json_object_foreach((json_t *)obj, key, v) {
    const char *const *a;
    for (a = allowed; *a; a++)
      if (strcmp(*a, key) == 0)
        break;
    if (*a == NULL) {
      join(path, base, key);
      return fail(c, path, "unknown field");
    }
  }
  return 0;
}

/* A number in [min, max]; absent: *out untouched. what: the message. */
static int get_num(ctx_t *c, const json_t *obj, const char *base,
                   const char *key, double min, double max, const char *what,
                   double *out) {
  json_t *v = json_object_get(obj, key);
  char path[PATH_MAX_LEN], buf[64];
  double d;

  if (v == NULL)
    return 0;
  join(path, base, key);
  if (!json_is_number(v))
    return fail(c, path, "expected %s (got %s)", what,
                shown(v, buf, sizeof(buf)));
  d = json_number_value(v);
  if (!isfinite(d) || d < min || d > max)
    return fail(c, path, "expected %s (got %s)", what,
                shown(v, buf, sizeof(buf)));
  *out = d;
  return 0;
}

static int get_int(ctx_t *c, const json_t *obj, const char *base,
                   const char *key, long min, long max, int *out) {
  json_t *v = json_object_get(obj, key);
  char path[PATH_MAX_LEN], buf[64];
  double d;

  if (v == NULL)
    return 0;
  join(path, base, key);
  d = json_is_number(v) ? json_number_value(v) : NAN;
  if (!isfinite(d) || d != floor(d) || d < (double)min || d > (double)max)
    return fail(c, path, "expected an integer from %ld to %ld (got %s)", min,
                max, shown(v, buf, sizeof(buf)));
  *out = (int)d;
  return 0;
}

static int get_bool(ctx_t *c, const json_t *obj, const char *base,
                    const char *key, int *out) {
  json_t *v = json_object_get(obj, key);
  char path[PATH_MAX_LEN], buf[64];

  if (v == NULL)
    return 0;
  join(path, base, key);
  if (!json_is_boolean(v))
    return fail(c, path, "expected true or false (got %s)",
                shown(v, buf, sizeof(buf)));
  *out = json_is_true(v);
  return 0;
}

/* A probability: a number from 0 to 1, or true (1) / false (0). */
static int get_prob(ctx_t *c, const json_t *obj, const char *base,
                    const char *key, double *out) {
  json_t *v = json_object_get(obj, key);
  if (v != NULL && json_is_boolean(v)) {
    *out = json_is_true(v) ? 1.0 : 0.0;
    return 0;
  }
  return get_num(c, obj, base, key, 0.0, 1.0,
                 "a probability from 0 to 1, or true/false", out);
}

/* One of the words in names (NULL-terminated); *out = its index. */
static int get_word(ctx_t *c, const json_t *obj, const char *key,
                    const char *const *names, const int *values, int *out) {
  json_t *v = json_object_get(obj, key);
  char buf[64], list[96] = "";
  int i;

  if (v == NULL)
    return 0;
  for (i = 0; names[i]; i++) {
    if (json_is_string(v) && strcmp(json_string_value(v), names[i]) == 0) {
      *out = values[i];
      return 0;
    }
    snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s\"%s\"",
             i ? (names[i + 1] ? ", " : " or ") : "", names[i]);
  }
  return fail(c, key, "expected %s (got %s)", list,
              shown(v, buf, sizeof(buf)));
}

static int in_lab_range(int af, const uint8_t *a) {
  if (af == AF_INET)
    return a[0] == 198 && (a[1] & 0xfe) == 18; /* 198.18.0.0/15 */
  return a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8;
}

static const char *lab_range(int af) {
  return af == AF_INET ? "198.18.0.0/15" : "2001:db8::/32";
}

static int alen(int af) { return af == AF_INET ? 4 : 16; }

static int in_prefix(int af, const uint8_t *a, const uint8_t *p, int plen) {
  int i;
  (void)af;
  for (i = 0; i < plen; i++) {
    uint8_t m = (uint8_t)(0x80 >> (i % 8));
    if ((a[i / 8] & m) != (p[i / 8] & m))
      return 0;
  }
  return 1;
}

const char *netsim_ntop(int af, const uint8_t *a, char *buf, size_t len) {
  if (inet_ntop(af, a, buf, (socklen_t)len) == NULL)
    snprintf(buf, len, "?");
  return buf;
}

/* An address of the scenario's family inside the lab's range. */
static int get_addr(ctx_t *c, const json_t *obj, const char *base,
                    const char *key, int *has, uint8_t *out) {
  json_t *v = json_object_get(obj, key);
  char path[PATH_MAX_LEN], buf[64];
  uint8_t a[16];

  if (v == NULL)
    return 0;
  join(path, base, key);
  if (!json_is_string(v) ||
      inet_pton(c->af, json_string_value(v), a) != 1)
    return fail(c, path, "expected an %s address like the prefix's (got %s)",
                c->af == AF_INET ? "IPv4" : "IPv6",
                shown(v, buf, sizeof(buf)));
  if (!in_lab_range(c->af, a))
    return fail(c, path, "%s is outside the lab's range %s",
                json_string_value(v), lab_range(c->af));
  memcpy(out, a, (size_t)alen(c->af));
  *has = 1;
  return 0;
}

static int load_prefix(ctx_t *c, const json_t *root, netsim_scenario_t *sc) {
  json_t *v = json_object_get(root, "prefix");
  char text[64], buf[64], *slash, *end;
  long plen;
  int i, max;

  if (v == NULL)
    return fail(c, "prefix", "missing (the addresses routed to the "
                "simulator, e.g. \"198.18.200.0/24\")");
  if (!json_is_string(v) || strlen(json_string_value(v)) >= sizeof(text))
    return fail(c, "prefix", "expected an address/length string like "
                "\"198.18.200.0/24\" (got %s)", shown(v, buf, sizeof(buf)));
  snprintf(text, sizeof(text), "%s", json_string_value(v));
  slash = strchr(text, '/');
  if (slash == NULL)
    return fail(c, "prefix", "expected ADDRESS/LENGTH (got \"%s\")", text);
  *slash = '\0';
  c->af = strchr(text, ':') ? AF_INET6 : AF_INET;
  if (inet_pton(c->af, text, sc->prefix) != 1)
    return fail(c, "prefix", "\"%s\" is not an IPv4 or IPv6 address", text);
  max = c->af == AF_INET ? 30 : 126;
  errno = 0;
  plen = strtol(slash + 1, &end, 10);
  if (slash[1] == '\0' || *end != '\0' || errno ||
      plen < (c->af == AF_INET ? 15 : 32) || plen > max)
    return fail(c, "prefix", "expected a length from %d to %d after the / "
                "(inside %s, with room for the target and the source)",
                c->af == AF_INET ? 15 : 32, max, lab_range(c->af));
  if (!in_lab_range(c->af, sc->prefix))
    return fail(c, "prefix", "%s/%ld is outside the lab's range %s",
                text, plen, lab_range(c->af));
  for (i = (int)plen; i < alen(c->af) * 8; i++)
    if (sc->prefix[i / 8] & (0x80 >> (i % 8)))
      return fail(c, "prefix", "%s has bits set beyond /%ld", text, plen);
  sc->af = c->af;
  sc->plen = (int)plen;
  return 0;
}

static int load_mpls(ctx_t *c, const json_t *arr, const char *base,
                     netsim_hop_t *h) {
  static const char *const keys[] = {"label", "exp", "s", "ttl", NULL};
  char path[PATH_MAX_LEN], buf[64];
  size_t i;

  join(path, base, "mpls");
  if (!json_is_array(arr))
    return fail(c, path, "expected a list of label stack entries "
                "({\"label\", \"exp\", \"s\", \"ttl\"}) (got %s)",
                shown(arr, buf, sizeof(buf)));
  if (json_array_size(arr) > NETSIM_MAX_MPLS)
    return fail(c, path, "at most %d entries", NETSIM_MAX_MPLS);
  for (i = 0; i < json_array_size(arr); i++) {
    json_t *e = json_array_get(arr, i);
    sonde_mpls_t *m = &h->mpls[i];
    char epath[PATH_MAX_LEN];
    int label = -1, exp = 0, s = -1, ttl = 1;
    json_t *sv;

    if (snprintf(epath, sizeof(epath), "%s[%zu]", path, i) >=
        (int)sizeof(epath))
      return fail(c, path, "path too long");
    if (!json_is_object(e))
      return fail(c, epath, "expected an object with label, exp, s, ttl");
    if (only_known(c, e, epath, keys) ||
        get_int(c, e, epath, "label", 0, 0xfffff, &label) ||
        get_int(c, e, epath, "exp", 0, 7, &exp) ||
        get_int(c, e, epath, "ttl", 0, 255, &ttl))
      return -1;
    sv = json_object_get(e, "s");
    if (sv && json_is_boolean(sv))
      s = json_is_true(sv);
    else if (get_int(c, e, epath, "s", 0, 1, &s))
      return -1;
    if (label < 0) {
      char lpath[PATH_MAX_LEN];
      join(lpath, epath, "label");
      return fail(c, lpath, "missing (an integer from 0 to 1048575)");
    }
    if (s < 0) /* bottom of stack: the last entry */
      s = i + 1 == json_array_size(arr);
    m->label = (uint32_t)label;
    m->exp = (uint8_t)exp;
    m->s = (uint8_t)s;
    m->ttl = (uint8_t)ttl;
  }
  h->n_mpls = (int)json_array_size(arr);
  return 0;
}

/* "interface": an RFC 5837 interface information object,
 * {"role", "ifindex", "addr", "name", "mtu"}, each optional (role
 * "incoming" by default). */
static int load_ifinfo(ctx_t *c, const json_t *o, const char *base,
                       netsim_hop_t *h) {
  static const char *const keys[] = {"role", "ifindex", "addr", "name",
                                     "mtu", NULL};
  static const char *const roles[] = {"incoming", "incoming_sub_ip",
                                      "outgoing", "next_hop"};
  netsim_ifinfo_t *x = &h->ifinfo;
  char path[PATH_MAX_LEN], buf[64];
  int ifindex = -1, mtu = -1, has_addr = 0, i;
  json_t *v;

  join(path, base, "interface");
  if (!json_is_object(o))
    return fail(c, path, "expected an object with role, ifindex, addr, "
                "name, mtu (got %s)", shown(o, buf, sizeof(buf)));
  if (only_known(c, o, path, keys) ||
      get_int(c, o, path, "ifindex", 0, 0x7fffffff, &ifindex) ||
      get_int(c, o, path, "mtu", 0, 0x7fffffff, &mtu) ||
      get_addr(c, o, path, "addr", &has_addr, x->addr))
    return -1;
  if ((v = json_object_get(o, "role")) != NULL) {
    char rpath[PATH_MAX_LEN];
    join(rpath, path, "role");
    for (i = 0; i < 4; i++)
      if (json_is_string(v) && strcmp(json_string_value(v), roles[i]) == 0)
        break;
    if (i == 4)
      return fail(c, rpath, "expected incoming, incoming_sub_ip, outgoing "
                  "or next_hop (got %s)", shown(v, buf, sizeof(buf)));
    x->role = i;
  }
  if ((v = json_object_get(o, "name")) != NULL) {
    char npath[PATH_MAX_LEN];
    join(npath, path, "name");
    if (!json_is_string(v) || strlen(json_string_value(v)) > 63)
      return fail(c, npath, "expected a string of at most 63 bytes");
    snprintf(x->name, sizeof(x->name), "%s", json_string_value(v));
  }
  x->has_ifindex = ifindex >= 0;
  x->ifindex = ifindex >= 0 ? (uint32_t)ifindex : 0;
  x->has_mtu = mtu >= 0;
  x->mtu = mtu >= 0 ? (uint32_t)mtu : 0;
  x->addr_af = has_addr ? c->af : 0;
  h->has_ifinfo = 1;
  return 0;
}

static void hop_defaults(netsim_hop_t *h, int ttl) {
  memset(h, 0, sizeof(*h));
  h->ttl = ttl;
  h->reorder_ms = 10;
  h->rate_burst = 1;
  h->reply_ttl = -1;
  h->quote_bytes = -1;
}

static int load_hop(ctx_t *c, const json_t *o, const char *base, int prev_ttl,
                    netsim_hop_t *h) {
  static const char *const keys[] = {
      "ttl", "addr", "delay_ms", "jitter_ms", "loss", "silent", "mpls",
      "rate_limit", "rate_burst", "reply_ttl", "quote_bytes", "bad_checksum",
      "padded_extension", "duplicate", "reorder", "reorder_ms", "comment",
      "interface", "length_in_bytes", NULL};
  static const char *ms = "a non-negative number of at most 60000 ms";
  char path[PATH_MAX_LEN];
  json_t *v;
  int ttl = prev_ttl + 1;

  if (!json_is_object(o))
    return fail(c, base, "expected an object (a hop)");
  if (only_known(c, o, base, keys))
    return -1;
  if (prev_ttl >= NETSIM_MAX_HOPS && json_object_get(o, "ttl") == NULL)
    return fail(c, base, "no TTL left after %d", prev_ttl);
  if (get_int(c, o, base, "ttl", 1, 255, &ttl))
    return -1;
  if (ttl <= prev_ttl) {
    join(path, base, "ttl");
    return fail(c, path, "expected a TTL greater than %d (hops are listed "
                "in TTL order)", prev_ttl);
  }
  hop_defaults(h, ttl);
  if (get_bool(c, o, base, "silent", &h->silent) ||
      get_addr(c, o, base, "addr", &h->has_addr, h->addr))
    return -1;
  if (!h->silent && !h->has_addr) {
    join(path, base, "addr");
    return fail(c, path, "missing (the hop's address; or \"silent\": true)");
  }
  if (get_num(c, o, base, "delay_ms", 0, NETSIM_MAX_DELAY_MS, ms,
              &h->delay_ms) ||
      get_num(c, o, base, "jitter_ms", 0, NETSIM_MAX_DELAY_MS, ms,
              &h->jitter_ms) ||
      get_num(c, o, base, "reorder_ms", 0, NETSIM_MAX_DELAY_MS, ms,
              &h->reorder_ms) ||
      get_prob(c, o, base, "loss", &h->loss) ||
      get_prob(c, o, base, "duplicate", &h->duplicate) ||
      get_prob(c, o, base, "reorder", &h->reorder) ||
      get_num(c, o, base, "rate_limit", 0.001, 1e6,
              "a number of ICMP messages per second from 0.001 to 1000000",
              &h->rate_limit) ||
      get_num(c, o, base, "rate_burst", 1, 1e6,
              "a number of messages from 1 to 1000000", &h->rate_burst) ||
      get_int(c, o, base, "reply_ttl", 1, 255, &h->reply_ttl) ||
      get_int(c, o, base, "quote_bytes", 0, 65535, &h->quote_bytes) ||
      get_bool(c, o, base, "bad_checksum", &h->bad_checksum) ||
      get_bool(c, o, base, "padded_extension", &h->padded_extension) ||
      get_bool(c, o, base, "length_in_bytes", &h->length_in_bytes))
    return -1;
  if ((v = json_object_get(o, "interface")) && load_ifinfo(c, v, base, h))
    return -1;
  if ((v = json_object_get(o, "mpls")) && load_mpls(c, v, base, h))
    return -1;
  if ((v = json_object_get(o, "comment")) && !json_is_string(v)) {
    join(path, base, "comment");
    return fail(c, path, "expected a string");
  }
  h->tokens = h->rate_burst;
  return 0;
}

static int same(int af, const uint8_t *a, const uint8_t *b) {
  return memcmp(a, b, (size_t)alen(af)) == 0;
}

/* The highest address of the prefix but one: .254 of a /24. */
static void default_source(netsim_scenario_t *sc) {
  int i, n = alen(sc->af);
  memcpy(sc->source, sc->prefix, (size_t)n);
  for (i = sc->plen; i < n * 8; i++)
    sc->source[i / 8] |= (uint8_t)(0x80 >> (i % 8));
  sc->source[n - 1] &= 0xfe;
}

static int load(ctx_t *c, const json_t *root, netsim_scenario_t *sc) {
  static const char *const keys[] = {"prefix", "target", "source", "icmp",
                                     "udp", "tcp", "hops", "comment", NULL};
  static const char *const icmp_w[] = {"reply", "silent", NULL};
  static const char *const udp_w[] = {"unreachable", "silent", NULL};
  static const char *const tcp_w[] = {"open", "closed", "silent", NULL};
  static const int icmp_v[] = {NETSIM_ANSWER, NETSIM_SILENT};
  static const int udp_v[] = {NETSIM_ANSWER, NETSIM_SILENT};
  static const int tcp_v[] = {NETSIM_OPEN, NETSIM_ANSWER, NETSIM_SILENT};
  char buf[INET6_ADDRSTRLEN], path[PATH_MAX_LEN];
  json_t *hops, *v;
  int has_target = 0, has_source = 0, prev = 0, i, j;
  size_t k;

  if (!json_is_object(root))
    return fail(c, "(top)", "expected a JSON object");
  if (only_known(c, root, "", keys) || load_prefix(c, root, sc))
    return -1;
  if (get_addr(c, root, "", "target", &has_target, sc->target) ||
      get_addr(c, root, "", "source", &has_source, sc->source))
    return -1;
  if (!has_target)
    return fail(c, "target", "missing (the destination's address)");
  if (!in_prefix(sc->af, sc->target, sc->prefix, sc->plen))
    return fail(c, "target", "%s is not inside the prefix",
                netsim_ntop(sc->af, sc->target, buf, sizeof(buf)));
  if (!has_source)
    default_source(sc);
  else if (!in_prefix(sc->af, sc->source, sc->prefix, sc->plen))
    return fail(c, "source", "%s is not inside the prefix",
                netsim_ntop(sc->af, sc->source, buf, sizeof(buf)));
  if ((v = json_object_get(root, "comment")) && !json_is_string(v))
    return fail(c, "comment", "expected a string");
  sc->icmp = sc->udp = NETSIM_ANSWER;
  sc->tcp = NETSIM_ANSWER; /* closed: RST */
  if (get_word(c, root, "icmp", icmp_w, icmp_v, &sc->icmp) ||
      get_word(c, root, "udp", udp_w, udp_v, &sc->udp) ||
      get_word(c, root, "tcp", tcp_w, tcp_v, &sc->tcp))
    return -1;

  hops = json_object_get(root, "hops");
  if (hops == NULL)
    return fail(c, "hops", "missing (the routers of the path, by TTL)");
  if (!json_is_array(hops))
    return fail(c, "hops", "expected a list of hops");
  if (json_array_size(hops) > NETSIM_MAX_HOPS)
    return fail(c, "hops", "at most %d hops", NETSIM_MAX_HOPS);
  sc->dest = -1;
  for (k = 0; k < json_array_size(hops); k++) {
    netsim_hop_t *h = &sc->hops[k];
    snprintf(path, sizeof(path), "hops[%zu]", k);
    if (sc->dest >= 0)
      return fail(c, path, "comes after the target (hops[%d]), which "
                  "answers every TTL from its own on", sc->dest);
    if (load_hop(c, json_array_get(hops, k), path, prev, h))
      return -1;
    prev = h->ttl;
    if (h->has_addr && same(sc->af, h->addr, sc->target))
      sc->dest = (int)k;
    sc->n_hops = (int)k + 1;
  }
  if (sc->dest < 0) {
    /* The target answers at the TTL after the last hop, with defaults. */
    if (prev >= NETSIM_MAX_HOPS)
      return fail(c, "hops", "no TTL left for the target after TTL %d",
                  prev);
    sc->dest = sc->n_hops++;
    hop_defaults(&sc->hops[sc->dest], prev + 1);
    sc->hops[sc->dest].has_addr = 1;
    memcpy(sc->hops[sc->dest].addr, sc->target, (size_t)alen(sc->af));
    sc->hops[sc->dest].tokens = 1;
  }
  for (i = 0; i < sc->n_hops; i++) {
    if (sc->hops[i].has_addr && same(sc->af, sc->hops[i].addr, sc->source)) {
      if (has_source)
        return fail(c, "source", "%s is also the address of hops[%d]",
                    netsim_ntop(sc->af, sc->source, buf, sizeof(buf)), i);
      return fail(c, "source", "missing, and the default %s is the address "
                  "of hops[%d]: set \"source\" to a free address of the "
                  "prefix", netsim_ntop(sc->af, sc->source, buf, sizeof(buf)),
                  i);
    }
  }
  for (i = 0; i <= NETSIM_MAX_HOPS; i++)
    sc->by_ttl[i] = -1;
  for (j = 0; j < sc->n_hops; j++)
    sc->by_ttl[sc->hops[j].ttl] = j;
  return 0;
}

int netsim_scenario_load(const char *file, netsim_scenario_t *sc, char *err,
                         size_t errlen) {
  ctx_t c = {err, errlen, AF_INET};
  json_error_t je;
  json_t *root;
  struct stat st;
  int r;

  memset(sc, 0, sizeof(*sc));
  if (stat(file, &st) < 0) {
    snprintf(err, errlen, "%s", strerror(errno));
    return -1;
  }
  if (st.st_size > NETSIM_MAX_FILE) {
    snprintf(err, errlen, "larger than %d bytes", NETSIM_MAX_FILE);
    return -1;
  }
  root = json_load_file(file, JSON_REJECT_DUPLICATES, &je);
  if (root == NULL) {
    if (je.line > 0)
      snprintf(err, errlen, "line %d, column %d: invalid JSON: %s", je.line,
               je.column, je.text);
    else
      snprintf(err, errlen, "%s", je.text);
    return -1;
  }
  r = load(&c, root, sc);
  json_decref(root);
  return r;
}
