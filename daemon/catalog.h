/* The metrics the daemon itself declares: the canonical portal metrics
 * and its own health metrics (portalmetricsd.*). Bottom layer. */
#ifndef PM_CATALOG_H
#define PM_CATALOG_H

#include <portalmetrics/plugin.h>

/* NULL-name terminated. */
extern const pm_metric_decl_t pm_canonical_metrics[];
extern const pm_metric_decl_t pm_daemon_metrics[];

/* The declaration of name in a NULL-terminated table, or NULL. */
const pm_metric_decl_t *pm_catalog_find(const pm_metric_decl_t *table,
                                        const char *name);

#endif
