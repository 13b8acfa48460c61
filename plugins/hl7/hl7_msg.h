/*
 * An HL7 v2 message, parsed just enough to count it and acknowledge it.
 * Pure: parses a buffer, keeps copies of only the fields below (all from
 * MSH, EVN-2 and OBR-25: where, what and when, never who). Nothing of
 * PID, NK1, OBX, NTE or any other segment is copied or returned.
 *
 * Segments are separated by CR, LF or CRLF (the standard says CR; senders
 * vary); the last may lack its separator. MSH-1 is the field separator
 * and MSH-2 the encoding characters (component, repetition, escape,
 * subcomponent, and optionally the v2.7 truncation character `#`); any
 * printable non-alphanumeric ASCII characters, all distinct, are allowed.
 * Escape sequences in the extracted fields are decoded (\F\ \S\ \T\ \R\
 * \E\ \P\ and \Xhh..\ as bytes; others are dropped); a repetition's
 * first occurrence and a field's first component are what counts (MSH-9:
 * type^trigger^structure; MSH-11: its first component).
 */
#ifndef HL7_MSG_H
#define HL7_MSG_H

#include <stddef.h>
#include <stdint.h>

#define HL7_FIELD_MAX 200 /* longest field value kept (bytes, decoded) */

typedef enum {
  HL7_OK = 0,
  HL7_E_NOMSH = -1,    /* does not start with "MSH" */
  HL7_E_ENCODING = -2, /* MSH-1/MSH-2 missing or invalid */
  HL7_E_REQUIRED = -3, /* MSH-9 (type and trigger) or MSH-10 missing */
  HL7_E_CHARS = -4,    /* control characters other than CR, LF, tab */
  HL7_E_TOO_LONG = -5  /* a kept field longer than HL7_FIELD_MAX (or
                          than its array below, for the short ones) */
} hl7_err_t;

typedef struct hl7_msg {
  char fs, cs, rs, es, ss; /* field, component, repetition, escape,
                              subcomponent separators */
  /* each NUL-terminated, decoded; "" when absent */
  char sending_app[HL7_FIELD_MAX + 1];        /* MSH-3, first component */
  char sending_facility[HL7_FIELD_MAX + 1];   /* MSH-4, first component */
  char receiving_app[HL7_FIELD_MAX + 1];      /* MSH-5, first component */
  char receiving_facility[HL7_FIELD_MAX + 1]; /* MSH-6, first component */
  char datetime[32];                          /* MSH-7, as sent (DTM) */
  char type[8];                               /* MSH-9.1, e.g. "SIU" */
  char trigger[8];                            /* MSH-9.2, e.g. "S12" */
  char control_id[HL7_FIELD_MAX + 1];         /* MSH-10 */
  char processing_id[8]; /* MSH-11.1: P, T, D ("" absent) */
  char version[16];      /* MSH-12.1, e.g. "2.5.1" */
  char accept_ack[8];    /* MSH-15: AL, NE, ER, SU ("" absent) */
  char app_ack[8];       /* MSH-16 */
  char event_time[32];   /* EVN-2 (recorded date/time) as sent, "" none */
  int n_obr;             /* OBR segments seen */
  unsigned obr_status;   /* bit (c - 'A') set for each OBR-25 first char
                            c in A..Z seen */
} hl7_msg_t;

/*
 * Parse data[0..len). Returns HL7_OK, or an error with as much of *m
 * filled as was read before it (so an AE can still echo MSH-10 when it
 * was reached). Never reads past len; data need not be NUL-terminated.
 */
hl7_err_t hl7_msg_parse(const char *data, size_t len, hl7_msg_t *m);

/* One line for an error code: "no MSH segment", ... */
const char *hl7_err_str(hl7_err_t e);

/* 1 when m has an OBR-25 status c (e.g. 'F'). */
int hl7_msg_has_result_status(const hl7_msg_t *m, char c);

/*
 * An HL7 DTM ("YYYY[MM[DD[HH[MM[SS[.S{1,4}]]]]]][+/-ZZZZ]") to the
 * calendar date it falls on in the site's zone, as days since 1970-01-01.
 * With an offset (and a time) the instant is converted to the site's zone
 * with localtime_r: the process's TZ is the site's, as the daemon sets it
 * (and calls tzset); without one the sender's local time is taken as the
 * site's, so the date is read as written. Returns 0 and *day, or -1 when
 * dtm is not a valid DTM with at least a date.
 */
int hl7_dtm_day(const char *dtm, int32_t *day);

#endif
