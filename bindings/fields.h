/*
 * fields.h - option tables described once (private to sonde.core): each
 * field's name, type, range, default and help drive the reader of the
 * table, its error messages and the list Lua gets for validation and help
 * (core.probe_fields, core.engine_fields).
 */
#ifndef SONDE_FIELDS_H
#define SONDE_FIELDS_H

#include <stddef.h>
#include <stdint.h>

#include "lua.h"

/* What a field holds, and how it is checked. */
typedef enum {
  LF_ADDR,   /* a numeric IPv4/IPv6 address string -> sockaddr_storage */
  LF_CHOICE, /* one of choices[] -> base + its index, stored as an int */
  LF_INT,    /* an integer number in [min, max] */
  LF_NUMBER, /* a number in [min, max], NaN refused */
  LF_BOOL,   /* a boolean -> vtrue or vfalse, stored as an int */
  LF_BYTES,  /* a string of at most max bytes -> pointer and length */
  LF_TEXT,   /* a string of at most max bytes without NUL -> copied into a
                char array of max + 1 bytes, NUL-terminated */
  LF_HEX     /* an even number of hex digits, 1 to max bytes -> the bytes
                copied into a uint8_t array, their count in the uint8_t at
                len_off */
} lf_type_t;

/* How a number is stored in the output structure. */
typedef enum { LS_U8, LS_U16, LS_U32, LS_INT, LS_DOUBLE } lf_store_t;

/* The store kind of a structure member, from its type. Enums are stored as
 * an int (their size here). */
#define LF_STORE(type, member)                                                \
  _Generic(((type *)0)->member, uint8_t: LS_U8, uint16_t: LS_U16,            \
           uint32_t: LS_U32, double: LS_DOUBLE, default: LS_INT)

/* Where a field goes: LF_AT(type, member). */
#define LF_AT(type, member)                                                   \
  .off = offsetof(type, member), .store = LF_STORE(type, member)

/* The name, with its length for the reader's look-up. */
#define LF_NAME(s) .name = s, .len = sizeof(s) - 1

typedef struct lfield lfield_t;

struct lfield {
  const char *name;
  size_t len;
  lf_type_t type;
  size_t off;            /* the member in the output structure */
  lf_store_t store;
  size_t len_off;        /* LF_BYTES: the size_t member of the length;
                            LF_HEX: the uint8_t member of the count */
  double min, max;       /* LF_INT, LF_NUMBER: the range; LF_BYTES,
                            LF_TEXT, LF_HEX: max bytes */
  int has_def;           /* absent: def is stored (else nothing is) */
  double def;
  /* A second default, chosen when alt_when(out) is true, for a field
   * whose default depends on the fields before it; alt_name names it for
   * Lua (e.g. "default_tcp"). */
  double def_alt;
  int (*alt_when)(const void *out);
  const char *alt_name;
  int required;          /* absent is an error */
  const char *const *choices; /* LF_CHOICE (LF_BOOL: named values besides
                                 true and false): NULL-terminated */
  int base;              /* LF_CHOICE: the value of choices[0] */
  int vtrue, vfalse;     /* LF_BOOL: the values stored */
  int has_off;           /* nonzero: set the int at present_off to 1 */
  size_t present_off;
  /* Present only where allowed(out) is true (the fields before it
   * decide); else "<what>: <rule>" is raised: before the value is
   * checked, or after it if rule_last. only names the rule for Lua. */
  int (*allowed)(const void *out);
  const char *rule;
  const char *only;
  int rule_last;
  const char *help;
};

#define LF_MAX 32

/* A schema: its fields, and what the reader derives from them once, on
 * first use (the same values whoever computes them). */
typedef struct {
  const char *what;      /* "probe", "engine": the messages' prefix */
  const lfield_t *fields;
  int n;                 /* at most LF_MAX */
  size_t size;           /* of the output structure */
  void *defaults;        /* a structure of that size: every default */
  /* derived */
  int ready;
  uint16_t keys[LF_MAX]; /* length << 8 | first byte, for the look-up */
  uint32_t visit;        /* fields looked at even when absent */
} lschema_t;

/*
 * Read the table at idx into out (all of it is written): absent fields
 * get their default, present ones are checked and stored, field by field
 * in the schema's order. One pass over the table (lua_next), no
 * allocation, no work for absent fields that have a fixed default. Misuse raises a Lua
 * error naming the field and the value:
 *   "<what>: unknown field 'k'"
 *   "<what>: field 'k' must be a number (got string)"
 *   "<what>: field 'k' must be from 1 to 255 (got 300)"
 * String members point into the table's strings: valid while it is on the
 * stack.
 */
void sonde__lua_read_fields(lua_State *L, int idx, lschema_t *s, void *out);

/* The schema as a Lua list of {name=, type=, min=, max=, default=, help=,
 * values=, only=, required=}, pushed on the stack. */
void sonde__lua_push_fields(lua_State *L, const lschema_t *s);

#endif /* SONDE_FIELDS_H */
