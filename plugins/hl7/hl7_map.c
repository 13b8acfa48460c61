/* The counting rules of the HL7 listener. */
#include "hl7_map.h"

#include <stdlib.h>
#include <string.h>

static const struct {
  const char *type, *trigger, *metric, *statuses;
} defaults[] = {
    {"SIU", "S12", "portal.appointments_requested", NULL},
    {"SIU", "S15", "portal.appointments_canceled", NULL},
    {"SIU", "S26", "portal.appointments_noshow", NULL},
    {"ORU", "R01", "portal.lab_reports_sent", "FC"},
    {"ADT", "A04", "clinic.patients_registered", NULL},
};

static int code_ok(const char *s, size_t max) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > max)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
          s[i] == '_'))
      return 0;
  return 1;
}

int hl7_map_init(hl7_map_t *m) {
  m->rules = NULL;
  m->n = 0;
  for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
    if (hl7_map_set(m, defaults[i].type, defaults[i].trigger,
                    defaults[i].metric, defaults[i].statuses) != 0) {
      hl7_map_free(m);
      return -1;
    }
  return 0;
}

void hl7_map_free(hl7_map_t *m) {
  free(m->rules);
  m->rules = NULL;
  m->n = 0;
}

int hl7_map_set(hl7_map_t *m, const char *type, const char *trigger,
                const char *metric, const char *statuses) {
  hl7_rule_t r = {0}, *p;
  if (!code_ok(type, sizeof r.type - 1) ||
      !code_ok(trigger, sizeof r.trigger - 1) || !metric ||
      strlen(metric) > HL7_MAP_METRIC_MAX)
    return -2;
  for (const char *c = statuses; c && *c; c++) {
    if (*c < 'A' || *c > 'Z')
      return -2;
    r.statuses |= 1u << (*c - 'A');
  }
  strcpy(r.type, type);
  strcpy(r.trigger, trigger);
  strcpy(r.metric, metric);
  for (size_t i = 0; i < m->n; i++)
    if (strcmp(m->rules[i].type, type) == 0 &&
        strcmp(m->rules[i].trigger, trigger) == 0) {
      m->rules[i] = r;
      return 0;
    }
  p = realloc(m->rules, (m->n + 1) * sizeof *p);
  if (!p)
    return -1;
  m->rules = p;
  m->rules[m->n++] = r;
  return 0;
}

const char *hl7_map_match(const hl7_map_t *m, const hl7_msg_t *msg) {
  for (size_t i = 0; i < m->n; i++) {
    const hl7_rule_t *r = &m->rules[i];
    if (strcmp(r->type, msg->type) != 0 || strcmp(r->trigger, msg->trigger))
      continue;
    if (!r->metric[0])
      return NULL;
    if (r->statuses && !(msg->obr_status & r->statuses))
      return NULL;
    return r->metric;
  }
  return NULL;
}
