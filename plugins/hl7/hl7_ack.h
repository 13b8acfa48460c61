/*
 * Acknowledgements (HL7 v2.5 section 2.9): an ACK message in its MLLP
 * envelope, built from the parsed original. It carries only MSH fields
 * of the original (swapped sending and receiving application and
 * facility, MSH-10 echoed in MSA-2, the trigger, processing id and
 * version) and our own text: never any other content.
 */
#ifndef HL7_ACK_H
#define HL7_ACK_H

#include <stddef.h>
#include "hl7_msg.h"

/* Original mode AA/AE/AR; enhanced mode (the original has MSH-15 or
 * MSH-16) CA/CE/CR: hl7_ack_code picks the right one. */
typedef enum { HL7_ACK_ACCEPT, HL7_ACK_ERROR, HL7_ACK_REJECT } hl7_ack_kind_t;

/* "AA", "AE", "AR", or "CA", "CE", "CR" when m is in enhanced mode. */
const char *hl7_ack_code(const hl7_msg_t *m, hl7_ack_kind_t k);

/*
 * Write the ACK for m (which may be partly filled after a parse error:
 * missing fields are sent empty) into out, MLLP envelope included:
 *   SB MSH|^~\&|<m.receiving_app>|<m.receiving_facility>|<m.sending_app>|
 *      <m.sending_facility>|<now as YYYYMMDDHHMMSS+0000>||ACK^<trigger>^ACK|
 *      <ack_control_id>|<m.processing_id or P>|<m.version or 2.5> CR
 *      MSA|<code>|<m.control_id> CR
 *      [ERR|||<err_code>^<err_text>^HL70357|E CR]   when err_code != 0
 *      (ERR-3 the table 0357 code, ERR-4 the severity, as in v2.5)
 *   EB CR
 * with every echoed value re-escaped for the standard separators. text
 * is our own (e.g. "required field missing"), never message content.
 * now_unix: seconds. Returns the length written, or -1 if out is too
 * small (HL7_ACK_MAX always suffices for text and ack_control_id of at
 * most HL7_FIELD_MAX bytes: each echoed byte may take 5, as \X0D\).
 */
#define HL7_ACK_MAX 8192
int hl7_ack_build(const hl7_msg_t *m, hl7_ack_kind_t k, int err_code,
                  const char *text, const char *ack_control_id,
                  long long now_unix, char *out, size_t outlen);

/* HL7 table 0357 codes used here */
#define HL7_ERR_SEGMENT_SEQUENCE 100
#define HL7_ERR_REQUIRED_FIELD 101
#define HL7_ERR_DATA_TYPE 102
#define HL7_ERR_UNSUPPORTED_TYPE 200
#define HL7_ERR_UNSUPPORTED_VERSION 203
#define HL7_ERR_APPLICATION 207

#endif
