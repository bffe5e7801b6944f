/* sandbox.h - the script state of the `sonde` executable (sandbox.c). */
#ifndef SONDE_SANDBOX_H
#define SONDE_SANDBOX_H

#include "lua.h"

/* Shuts the doors from Lua to machine code in L, a state that
 * luaL_openlibs has opened: no ffi, no C modules, text chunks only. */
void sonde_sandbox(lua_State *L);

/* Opens dir, the bundled scripts, for require to read from, whoever the
 * process becomes later. -> 0 or a negative errno. Before sonde_sandbox. */
int sonde_sandbox_scripts(const char *dir);

/* Closes the scripts directory (after the state is closed). */
void sonde_sandbox_release(void);

#endif
