/* privsep.h - privilege drop and the output commit helper (privsep.c). */
#ifndef SONDE_PRIVSEP_H
#define SONDE_PRIVSEP_H

#include <sys/types.h>

#include "lua.h"

/* main(): the process will become `user` (root) or drop its capabilities
 * when the CLI calls sonde.core.drop_privileges(); until then no engine
 * may be created. */
void sonde_privsep_configure(const char *user);

/* main(), at the end: frees what configure and add_output kept, and
 * closes the socket to the commit helper (which then ends too). */
void sonde_privsep_release(void);

/* sonde.core opened in a Lua state (1), or that state closing (0). */
void sonde_privsep_state(int opened);

/* 1 while a configured drop has not happened (engines are refused). */
int sonde_privsep_pending(void);

/* Whom output files must belong to: 1 and *uid, *gid (the sudo user), or 0
 * (whoever creates them). */
int sonde_privsep_output_owner(uid_t *uid, gid_t *gid);

/* An output file: tmp (NULL: written in place) replaces path at commit;
 * one created before the drop is committed by the helper, if there is
 * one. -> its index, or a negative errno. */
int sonde_privsep_add_output(const char *tmp, const char *path);

/* Rename output i's temporary file over its path, here or by the commit
 * helper. -> 0 or a negative errno. */
int sonde_privsep_commit(int i);

/* Remove output i's temporary file (nothing if committed). */
void sonde_privsep_discard(int i);

/* sonde.core.drop_privileges() */
int sonde__l_drop_privileges(lua_State *L);

#endif
