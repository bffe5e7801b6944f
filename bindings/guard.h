/* guard.h - signals that end a run, while no engine watches them (core.c). */
#ifndef SONDE_GUARD_H
#define SONDE_GUARD_H

/* main(): SIGINT, SIGTERM, SIGHUP and SIGQUIT no longer kill the process
 * where no engine watches them; the first one is kept. An engine that
 * starts watching a kept signal receives it at once, and a signal that
 * came while none watched is sonde_guard_pending()'s. */
void sonde_guard_signals(void);

/* The signal that arrived while no engine watched it, or 0. */
int sonde_guard_pending(void);

#endif
