/* --once --stdout: run each poll collector once and print its samples as
 * JSON Lines, with no database and no state. Layer: main. */
#ifndef PM_ONCE_H
#define PM_ONCE_H

#include "plan.h"

/* Takes plan. Returns the exit code: 0 when every run succeeded, 1 if one
 * failed or hung past its timeout. */
int pm_once_run(pm_plan_t *plan);

#endif
