/* output.h - output files for Lua (output.c). */
#ifndef SONDE_OUTPUT_H
#define SONDE_OUTPUT_H

#include "lua.h"

/* core.output_open(path, opts) (its registration is core.c's), and the
 * output objects' metatable, registered when the module opens. */
int sonde__lua_output_open(lua_State *L);
void sonde__output_init(lua_State *L);

#endif
