/* The metrics the daemon declares itself (DESIGN.md "Canonical portal
 * metrics" and the collectors' health). */
#include "catalog.h"

#include <string.h>

const pm_metric_decl_t pm_canonical_metrics[] = {
    {"portal.patients_enrolled", PM_GAUGE, "patients",
     "patients with an activated portal account"},
    {"portal.patients_used", PM_GAUGE, "patients",
     "distinct patients who logged in during the trailing 30 days"},
    {"portal.messages_sent", PM_COUNT, "messages",
     "messages of every kind sent to patients (automated included)"},
    {"portal.secure_messages_sent", PM_COUNT, "messages",
     "secure messages patients sent to the care team"},
    {"portal.secure_messages_received", PM_COUNT, "messages",
     "secure messages patients received from the care team"},
    {"portal.lab_reports_sent", PM_COUNT, "reports",
     "lab/diagnostic reports released (final or corrected)"},
    {"portal.lab_reports_viewed", PM_COUNT, "reports",
     "lab/diagnostic reports patients viewed"},
    {"portal.appointments_requested", PM_COUNT, "appointments",
     "appointments made or requested"},
    {"portal.appointments_canceled", PM_COUNT, "appointments",
     "appointments canceled (HL7 SIU^S15; not S17 deletions)"},
    {"clinic.patients_seen", PM_GAUGE, "patients",
     "denominator: distinct patients seen in the trailing period"},
    {"portal.invitations_sent", PM_COUNT, "invitations",
     "portal invitations or activation codes issued"},
    {"portal.accounts_activated", PM_COUNT, "accounts", "accounts activated"},
    {"portal.appointments_noshow", PM_COUNT, "appointments",
     "no-shows (SIU^S26)"},
    {"clinic.patients_registered", PM_COUNT, "patients",
     "patients registered (ADT^A04)"},
    {NULL, 0, NULL, NULL}};

const pm_metric_decl_t pm_daemon_metrics[] = {
    {"portalmetricsd.collect_runs", PM_COUNT, "runs",
     "collect runs finished, per minute"},
    {"portalmetricsd.collect_duration_seconds", PM_GAUGE, "seconds",
     "duration of the collector's last run"},
    {"portalmetricsd.collect_last_success", PM_GAUGE, "unix seconds",
     "wall-clock time of the collector's last successful run"},
    {"portalmetricsd.collect_errors", PM_COUNT, "runs",
     "failed or abandoned runs, per minute, by reason"},
    {"portalmetricsd.runs_skipped", PM_COUNT, "runs",
     "runs not started, per minute, by reason (overlap, busy)"},
    {"portalmetricsd.samples_emitted", PM_COUNT, "samples",
     "samples accepted from the collector, per minute"},
    {"portalmetricsd.samples_refused", PM_COUNT, "samples",
     "samples refused at emit, per minute, by reason"},
    {"portalmetricsd.spool_records", PM_GAUGE, "samples",
     "samples accepted and not yet shipped to PostgreSQL"},
    {"portalmetricsd.db_connected", PM_GAUGE, "1",
     "1 while the writer holds a working database connection"},
    {"portalmetricsd.shipped", PM_COUNT, "samples",
     "samples committed to PostgreSQL, per minute"},
    {"portalmetricsd.ship_retries", PM_COUNT, "attempts",
     "failed ship or connect attempts, retried, per minute"},
    {"portalmetricsd.ship_refused", PM_COUNT, "samples",
     "samples the database refused (series kind or identity conflict), per "
     "minute"},
    {"portalmetricsd.dead_lettered", PM_COUNT, "samples",
     "samples the database refused as bad data, written to the dead-letter "
     "file, per minute"},
    {"portalmetricsd.spool_bytes", PM_GAUGE, "bytes",
     "bytes the spool holds on disk (and pending)"},
    {"portalmetricsd.spool_oldest_age_seconds", PM_GAUGE, "seconds",
     "how long the oldest unshipped sample has waited"},
    {"portalmetricsd.spool_quarantined", PM_COUNT, "ranges",
     "damaged spool ranges set aside at start (see the log)"},
    {"portalmetricsd.spool_fsync_failures", PM_COUNT, "groups",
     "group commits failed by a write or fsync error"},
    {"portalmetricsd.emits_busy", PM_COUNT, "emits",
     "emits refused because the spool was full (the sender retries), per "
     "minute"},
    {"portalmetricsd.emits_duplicate", PM_COUNT, "emits",
     "emits recognised by their idempotency key and counted once, per "
     "minute"},
    {"portalmetricsd.alert_leader", PM_GAUGE, "1",
     "1 while this daemon holds the alert leader lock"},
    {"portalmetricsd.targets_refused", PM_GAUGE, "targets",
     "this daemon's targets refused: another daemon defines them "
     "differently"},
    {"portalmetricsd.alert_events", PM_COUNT, "events",
     "alert events recorded by this daemon as leader, per minute"},
    {"portalmetricsd.alert_deliveries", PM_COUNT, "deliveries",
     "alert events delivered by notifiers, per minute"},
    {"portalmetricsd.alert_delivery_errors", PM_COUNT, "attempts",
     "failed notifier attempts (retried with backoff), per minute"},
    {"portalmetricsd.alert_deliveries_abandoned", PM_COUNT, "deliveries",
     "deliveries given up after the notifier's give_up, per minute"},
    {NULL, 0, NULL, NULL}};

const pm_metric_decl_t *pm_catalog_find(const pm_metric_decl_t *table,
                                        const char *name) {
  if (!table)
    return NULL;
  for (; table->name; table++)
    if (strcmp(table->name, name) == 0)
      return table;
  return NULL;
}
