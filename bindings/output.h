/* output.h - output files for Lua (output.c). */
#ifndef SONDE_OUTPUT_H
#define SONDE_OUTPUT_H

#include "lua.h"

/* Sets output_open in the table on top of L's stack and registers the
 * output objects' metatable. */
void sonde__output_register(lua_State *L);

#endif
