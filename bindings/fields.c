/*
 * fields.c - the reader of option tables described by a schema (fields.h):
 * the probe table on the hot path of campaigns and sweeps, the engine's
 * options. One pass over the table collects the values, then each field is
 * checked and stored in the schema's order; the first problem raises an
 * error that names the field and the value.
 */
#include <math.h>
#include <string.h>
#include <sys/socket.h>

#include "lauxlib.h"
#include "lua.h"

#include "fields.h"
#include "lcore.h"
#include "sonde.h"

/* A value of the table, as the collecting pass saw it. */
typedef struct {
  int type;          /* LUA_TNIL when absent */
  double num;        /* a number, or a boolean as 0/1 */
  const char *str;   /* anchored by the table, on the stack */
  size_t len;
} lval_t;

static void put(void *out, const lfield_t *f, double v) {
  char *p = (char *)out + f->off;
  switch (f->store) {
  case LS_U8: *(uint8_t *)p = (uint8_t)v; break;
  case LS_U16: *(uint16_t *)p = (uint16_t)v; break;
  case LS_U32: *(uint32_t *)p = (uint32_t)v; break;
  case LS_INT: *(int *)p = (int)v; break;
  case LS_DOUBLE: *(double *)p = v; break;
  }
}

/* The errors, off the hot path: the value is fetched again, so that the
 * message shows it as Lua does (a number in a string field included). */
enum { E_TYPE, E_RANGE, E_INTEGER, E_CHOICE, E_ADDR, E_LONG, E_NUL,
       E_HEX, E_REQUIRED, E_RULE };

static const char *type_word(lf_type_t t) {
  switch (t) {
  case LF_ADDR: return "a numeric IP address string";
  case LF_INT: case LF_NUMBER: return "a number";
  case LF_BOOL: return "a boolean";
  case LF_HEX: return "a string of hex digits";
  default: return "a string";
  }
}

#if defined(__GNUC__)
__attribute__((noinline, cold))
#endif
static void field_error(lua_State *L, int idx, const lschema_t *s,
                        const lfield_t *f, int why) {
  const char *w = s->what, *k = f->name, *v;
  double x;
  int i;
  lua_getfield(L, idx, k);
  x = lua_tonumber(L, -1);
  switch (why) {
  case E_TYPE:
    if (f->type == LF_ADDR)
      luaL_error(L, "%s: field '%s' must be %s", w, k, type_word(f->type));
    luaL_error(L, "%s: field '%s' must be %s (got %s)", w, k,
               type_word(f->type), luaL_typename(L, -1));
    break;
  case E_RANGE:
    luaL_error(L, "%s: field '%s' must be from %f to %f (got %f)", w, k,
               f->min, f->max, x);
    break;
  case E_INTEGER:
    luaL_error(L, "%s: field '%s' must be an integer (got %f)", w, k, x);
    break;
  case E_CHOICE:
    v = lua_tostring(L, -1);
    luaL_error(L, "%s: field '%s' has an invalid value '%s'", w, k,
               v ? v : luaL_typename(L, -1));
    break;
  case E_ADDR:
    luaL_error(L, "%s: field '%s' is not a numeric IPv4/IPv6 address: '%s'",
               w, k, lua_tostring(L, -1));
    break;
  case E_LONG:
    luaL_error(L, "%s: field '%s' is longer than %d bytes", w, k,
               (int)f->max);
    break;
  case E_NUL:
    luaL_error(L, "%s: field '%s' holds a NUL byte", w, k);
    break;
  case E_HEX:
    luaL_error(L,
               "%s: field '%s' must be pairs of hex digits, 1 to %d bytes "
               "(got '%s')",
               w, k, (int)f->max, lua_tostring(L, -1));
    break;
  case E_REQUIRED:
    if (f->type != LF_CHOICE)
      field_error(L, idx, s, f, E_TYPE);
    lua_pushfstring(L, "%s: field '%s' is required (", w, k);
    for (i = 0; f->choices[i]; i++)
      lua_pushfstring(L, i == 0 ? "%s" : f->choices[i + 1] ? ", %s" : " or %s",
                      f->choices[i]);
    lua_pushliteral(L, ")");
    lua_concat(L, i + 2);
    lua_error(L);
    break;
  default:
    luaL_error(L, "%s: %s", w, f->rule);
  }
}

static uint16_t key_of(const char *k, size_t n) {
  return n < 256 ? (uint16_t)(n << 8 | (unsigned char)k[0]) : 0xffff;
}

/* The field named k (n bytes), or -1. Length and first byte first: a key
 * is compared in full only with the name it almost certainly is. */
static int lookup(const lschema_t *s, const char *k, size_t n) {
  uint16_t key = key_of(k, n);
  int i;
  size_t j;
  for (i = 0; i < s->n; i++) {
    const char *name = s->fields[i].name;
    if (s->keys[i] != key)
      continue;
    for (j = 1; j < n && name[j] == k[j]; j++)
      ;
    if (j >= n)
      return i;
  }
  return -1;
}

/* The look-up keys, the structure of defaults, and the fields to look at
 * when absent: required ones, and defaults that depend on other fields. */
static void prepare(lschema_t *s) {
  int i;
  memset(s->defaults, 0, s->size);
  s->visit = 0;
  for (i = 0; i < s->n; i++) {
    const lfield_t *f = &s->fields[i];
    s->keys[i] = key_of(f->name, f->len);
    if (f->has_def)
      put(s->defaults, f, f->def);
    if (f->required || f->alt_when)
      s->visit |= 1u << i;
  }
  s->ready = 1;
}

/* The value of hex digit c, or -1. */
static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Check a present value and store it; raises on the first problem. */
static void check_store(lua_State *L, int idx, const lschema_t *s,
                        const lfield_t *f, const lval_t *v, void *out) {
  int i;
  size_t n;
  switch (f->type) {
  case LF_ADDR:
    if (v->type != LUA_TSTRING) /* a number is shown as not an address */
      field_error(L, idx, s, f, v->type == LUA_TNUMBER ? E_ADDR : E_TYPE);
    if (sonde_addr_parse(v->str, 0,
                         (struct sockaddr_storage *)((char *)out + f->off)) <
        0)
      field_error(L, idx, s, f, E_ADDR);
    return;
  case LF_CHOICE:
    if (v->type == LUA_TSTRING)
      for (i = 0; f->choices[i]; i++)
        if (strcmp(f->choices[i], v->str) == 0) {
          put(out, f, f->base + i);
          return;
        }
    if (f->required && v->type == LUA_TSTRING && v->len == 0)
      field_error(L, idx, s, f, E_REQUIRED);
    field_error(L, idx, s, f, E_CHOICE);
    return;
  case LF_INT:
  case LF_NUMBER:
    if (v->type != LUA_TNUMBER)
      field_error(L, idx, s, f, E_TYPE);
    if (isnan(v->num) || v->num < f->min || v->num > f->max)
      field_error(L, idx, s, f, E_RANGE);
    if (f->type == LF_INT && v->num != floor(v->num))
      field_error(L, idx, s, f, E_INTEGER);
    put(out, f, v->num);
    return;
  case LF_BOOL:
    /* a boolean, or one of the field's named values (df = "probe") */
    if (v->type == LUA_TSTRING && f->choices)
      for (i = 0; f->choices[i]; i++)
        if (strcmp(f->choices[i], v->str) == 0) {
          put(out, f, f->base + i);
          return;
        }
    if (v->type != LUA_TBOOLEAN)
      field_error(L, idx, s, f, E_TYPE);
    put(out, f, v->num != 0 ? f->vtrue : f->vfalse);
    return;
  case LF_BYTES:
    if (v->type != LUA_TSTRING)
      field_error(L, idx, s, f, E_TYPE);
    if ((double)v->len > f->max)
      field_error(L, idx, s, f, E_LONG);
    *(const char **)((char *)out + f->off) = v->str;
    *(size_t *)((char *)out + f->len_off) = v->len;
    return;
  case LF_TEXT:
    if (v->type != LUA_TSTRING)
      field_error(L, idx, s, f, E_TYPE);
    if ((double)v->len > f->max)
      field_error(L, idx, s, f, E_LONG);
    if (memchr(v->str, '\0', v->len))
      field_error(L, idx, s, f, E_NUL);
    memcpy((char *)out + f->off, v->str, v->len);
    ((char *)out + f->off)[v->len] = '\0';
    return;
  case LF_HEX:
    if (v->type != LUA_TSTRING)
      field_error(L, idx, s, f, E_TYPE);
    if (v->len == 0 || v->len % 2 != 0 || (double)(v->len / 2) > f->max)
      field_error(L, idx, s, f, E_HEX);
    for (n = 0; n < v->len; n++)
      if (hexval(v->str[n]) < 0)
        field_error(L, idx, s, f, E_HEX);
    for (n = 0; n < v->len / 2; n++)
      ((uint8_t *)out + f->off)[n] =
          (uint8_t)(hexval(v->str[2 * n]) << 4 | hexval(v->str[2 * n + 1]));
    *((uint8_t *)out + f->len_off) = (uint8_t)(v->len / 2);
    return;
  }
}

void sonde__lua_read_fields(lua_State *L, int idx, lschema_t *s, void *out) {
  lval_t v[LF_MAX];
  uint32_t present = 0, todo;
  int i;

  if (!s->ready)
    prepare(s);
  memcpy(out, s->defaults, s->size);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    size_t n = 0;
    const char *k = NULL;
    int t = lua_type(L, -1);
    if (lua_type(L, -2) == LUA_TSTRING)
      k = lua_tolstring(L, -2, &n);
    i = k ? lookup(s, k, n) : -1;
    if (i < 0)
      return (void)luaL_error(L, "%s: unknown field '%s'", s->what,
                              k ? k : luaL_typename(L, -2));
    present |= 1u << i;
    v[i].type = t;
    if (t == LUA_TNUMBER)
      v[i].num = lua_tonumber(L, -1);
    else if (t == LUA_TBOOLEAN)
      v[i].num = lua_toboolean(L, -1);
    else if (t == LUA_TSTRING)
      v[i].str = lua_tolstring(L, -1, &v[i].len);
    lua_pop(L, 1);
  }
  for (todo = present | s->visit; todo != 0; todo &= todo - 1) {
    const lfield_t *f;
    i = __builtin_ctz(todo);
    f = &s->fields[i];
    if (!(present & (1u << i))) {
      if (f->required)
        field_error(L, idx, s, f, E_REQUIRED);
      else
        put(out, f, f->alt_when(out) ? f->def_alt : f->def);
      continue;
    }
    if (f->allowed && !f->rule_last && !f->allowed(out))
      field_error(L, idx, s, f, E_RULE);
    check_store(L, idx, s, f, &v[i], out);
    if (f->allowed && f->rule_last && !f->allowed(out))
      field_error(L, idx, s, f, E_RULE);
    if (f->has_off)
      *(int *)((char *)out + f->present_off) = 1;
  }
}

static const char *const type_names[] = {"address", "choice", "integer",
                                         "number", "boolean", "string",
                                         "string", "hex"};

/* A string field, left out when v is NULL. */
static void set_str(lua_State *L, const char *k, const char *v) {
  if (v != NULL)
    lcore_set_str(L, k, v);
}

void sonde__lua_push_fields(lua_State *L, const lschema_t *s) {
  int i, j;
  lua_createtable(L, s->n, 0);
  for (i = 0; i < s->n; i++) {
    const lfield_t *f = &s->fields[i];
    lua_createtable(L, 0, 8);
    set_str(L, "name", f->name);
    set_str(L, "type", type_names[f->type]);
    if (f->type == LF_INT || f->type == LF_NUMBER) {
      lcore_set_num(L, "min", f->min);
      lcore_set_num(L, "max", f->max);
    } else if (f->type == LF_BYTES || f->type == LF_TEXT ||
               f->type == LF_HEX) {
      lcore_set_num(L, "max", f->max); /* bytes */
    }
    if (f->has_def && f->type == LF_CHOICE) {
      set_str(L, "default", f->choices[(int)f->def - f->base]);
    } else if (f->has_def && f->type == LF_BOOL) {
      lua_pushboolean(L, f->def == f->vtrue);
      lua_setfield(L, -2, "default");
    } else if (f->has_def) {
      lcore_set_num(L, "default", f->def);
      if (f->alt_name)
        lcore_set_num(L, f->alt_name, f->def_alt);
    }
    if (f->choices) {
      lua_newtable(L);
      for (j = 0; f->choices[j]; j++) {
        lua_pushstring(L, f->choices[j]);
        lua_rawseti(L, -2, j + 1);
      }
      lua_setfield(L, -2, "values");
    }
    if (f->required) {
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, "required");
    }
    set_str(L, "only", f->allowed ? f->only : NULL);
    set_str(L, "help", f->help);
    lua_rawseti(L, -2, i + 1);
  }
}
