/* Error codes are the PM_E* of the plugin header; this explains them, in
 * one place. Bottom layer. */
#ifndef PM_ERRORS_H
#define PM_ERRORS_H

/* One line for the log: "timestamp too old or too far in the future". */
const char *pm_strerror(int code);
/* A short stable token for metric labels: "timeout", "peer", ... */
const char *pm_errname(int code);

#endif
