/*
 * HL7 parsing and ACKs (plugins/hl7/hl7_msg.h, hl7_ack.h). The input is
 * one message as received (no envelope). Oracles beyond "no crash":
 *  - every string of hl7_msg_t is NUL-terminated inside its array, and a
 *    message that parses has its type, trigger and control id;
 *  - its ACK (AA, or AE with an ERR after an error, as the plugin would
 *    send) fits HL7_ACK_MAX, is one MLLP frame (SB first, EB CR last,
 *    neither inside), holds no raw ~ or & past MSH-2, and parses back:
 *    our MSH holds the original's applications and facilities swapped,
 *    byte for byte after decoding;
 *  - MSA-2, put in the MSH-10 of a message of its own, decodes back to
 *    the original MSH-10;
 *  - a DTM that hl7_dtm_day takes lies within years 0..9999.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hl7_ack.h"
#include "hl7_msg.h"

#define TERMINATED(a) (memchr((a), '\0', sizeof(a)) != NULL)

static void check_terminated(const hl7_msg_t *m) {
  if (!TERMINATED(m->sending_app) || !TERMINATED(m->sending_facility) ||
      !TERMINATED(m->receiving_app) || !TERMINATED(m->receiving_facility) ||
      !TERMINATED(m->datetime) || !TERMINATED(m->type) ||
      !TERMINATED(m->trigger) || !TERMINATED(m->control_id) ||
      !TERMINATED(m->processing_id) || !TERMINATED(m->version) ||
      !TERMINATED(m->accept_ack) || !TERMINATED(m->app_ack) ||
      !TERMINATED(m->event_time))
    abort();
}

static void check_dtm(const char *s) {
  int32_t day;
  /* 0000-01-01 and 9999-12-31, a day of margin for the offset */
  if (hl7_dtm_day(s, &day) == 0 && (day < -719529 || day > 2932897))
    abort();
}

static void same(const char *a, const char *b) {
  if (strcmp(a, b) != 0)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  hl7_msg_t m, a;
  char out[HL7_ACK_MAX];
  hl7_err_t rc = hl7_msg_parse((const char *)data, size, &m);

  if (rc > HL7_OK || rc < HL7_E_TOO_LONG || !hl7_err_str(rc))
    abort();
  check_terminated(&m);
  if (rc == HL7_OK && (!m.type[0] || !m.trigger[0] || !m.control_id[0]))
    abort();
  check_dtm(m.datetime);
  check_dtm(m.event_time);

  int n =
      hl7_ack_build(&m, rc == HL7_OK ? HL7_ACK_ACCEPT : HL7_ACK_ERROR,
                    rc == HL7_OK ? 0 : HL7_ERR_REQUIRED_FIELD, hl7_err_str(rc),
                    "PM-ACK-1", 1795620645LL, out, sizeof(out));
  if (n < 5 || out[0] != 0x0B || out[n - 2] != 0x1C || out[n - 1] != 0x0D)
    abort();
  if (memchr(out + 1, 0x0B, (size_t)n - 1) ||
      memchr(out + 1, 0x1C, (size_t)n - 3))
    abort();
  /* We write no repetition or subcomponent: past MSH-2, a raw ~ or & is
   * an echoed byte left unescaped (our parser would not notice: it keeps
   * subcomponents whole). */
  if (memchr(out + 9, '~', (size_t)n - 9) ||
      memchr(out + 9, '&', (size_t)n - 9))
    abort();

  /* The ACK as a message: without a trigger only MSH-9.2 is missing. */
  hl7_err_t arc = hl7_msg_parse(out + 1, (size_t)n - 3, &a);
  if (arc != (m.trigger[0] ? HL7_OK : HL7_E_REQUIRED))
    abort();
  same(a.type, "ACK");
  same(a.trigger, m.trigger);
  same(a.control_id, "PM-ACK-1");
  same(a.sending_app, m.receiving_app);
  same(a.sending_facility, m.receiving_facility);
  same(a.receiving_app, m.sending_app);
  same(a.receiving_facility, m.sending_facility);
  same(a.processing_id, m.processing_id[0] ? m.processing_id : "P");
  same(a.version, m.version[0] ? m.version : "2.5");
  if (a.accept_ack[0] || a.app_ack[0] || a.n_obr != 0)
    abort();

  /* MSA|<code>|<MSA-2> CR */
  const char *code =
      hl7_ack_code(&m, rc == HL7_OK ? HL7_ACK_ACCEPT : HL7_ACK_ERROR);
  char head[16];
  int hn = snprintf(head, sizeof(head), "\rMSA|%s|", code);
  const char *msa = memmem(out, (size_t)n, head, (size_t)hn);
  if (!msa)
    abort();
  const char *v = msa + hn;
  const char *end = memchr(v, '\r', (size_t)(out + n - v));
  if (!end)
    abort();
  char again[HL7_ACK_MAX];
  int k = snprintf(again, sizeof(again), "MSH|^~\\&|||||||ACK^A|%.*s",
                   (int)(end - v), v);
  if (k < 0 || (size_t)k >= sizeof(again))
    abort();
  arc = hl7_msg_parse(again, (size_t)k, &a);
  if (arc != (m.control_id[0] ? HL7_OK : HL7_E_REQUIRED))
    abort();
  same(a.control_id, m.control_id);
  return 0;
}
