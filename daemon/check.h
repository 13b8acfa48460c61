/* --check-config: after the config and the plugins' setting tables have
 * passed, make (and at once free) every collector's plugin instance, so a
 * value the plugin itself refuses (an unknown metric in a query, a key
 * file that does not parse) is found before the daemon starts. Layer:
 * main. */
#ifndef PM_CHECK_H
#define PM_CHECK_H

#include "plan.h"

/* Logs each refusal (the plugin says why). Returns the number of
 * collectors whose plugin refused its settings. Does not take plan. */
size_t pm_check_create(pm_plan_t *plan);

#endif
