/*
 * What a message counts: HL7 message type and trigger (and, for results,
 * the OBR-25 status) to a canonical metric. The defaults follow DESIGN.md:
 *
 *   SIU^S12 -> portal.appointments_requested
 *   SIU^S15 -> portal.appointments_canceled  (S17 is a deletion entered
 *                                              in error: not counted)
 *   SIU^S26 -> portal.appointments_noshow
 *   ORU^R01 with an OBR-25 of F or C -> portal.lab_reports_sent
 *   ADT^A04 -> clinic.patients_registered
 *
 * A settings `map` overrides them rule by rule (same type and trigger) or
 * adds new ones; a rule with an empty metric turns one off. Pure.
 */
#ifndef HL7_MAP_H
#define HL7_MAP_H

#include <stddef.h>
#include "hl7_msg.h"

#define HL7_MAP_METRIC_MAX 128

typedef struct hl7_rule {
  char type[8], trigger[8];
  char metric[HL7_MAP_METRIC_MAX + 1]; /* "" : counts nothing */
  unsigned statuses; /* OBR-25 statuses that count (bit c - 'A'); 0: any */
} hl7_rule_t;

typedef struct hl7_map {
  hl7_rule_t *rules;
  size_t n;
} hl7_map_t;

/* The default rules. 0 or -1 (out of memory). */
int hl7_map_init(hl7_map_t *m);
void hl7_map_free(hl7_map_t *m);

/* Add or replace the rule for type^trigger. statuses: letters such as
 * "FC", or NULL/"" for any. Returns 0, -1 out of memory, -2 a bad type,
 * trigger or status letter. */
int hl7_map_set(hl7_map_t *m, const char *type, const char *trigger,
                const char *metric, const char *statuses);

/* The metric msg counts, or NULL. */
const char *hl7_map_match(const hl7_map_t *m, const hl7_msg_t *msg);

#endif
