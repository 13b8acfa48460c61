/*
 * plugins/hl7/hl7_msg and hl7_ack: MSH, EVN-2 and OBR-25 out of real
 * looking messages (fake patients), the errors, DTM dates, and the ACKs
 * byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "hl7_ack.h"
#include "hl7_msg.h"

/* Segments without their terminator; joined with CR unless a test says. */
#define ADT_MSH                                                                \
  "MSH|^~\\&|REGADT|MCM|IFENG|PM|20261125083015-0700||ADT^A04^ADT_A01|"        \
  "MSG00001|P|2.5.1"
#define ADT_EVN "EVN|A04|20261125083000-0700"
#define ADT_PID                                                                \
  "PID|1||FAKE-MRN-1^^^MCM^MR||TESTPATIENT^ALPHA^Q||19491231|M|||"             \
  "1 FAKE STREET^^NOWHERE^ZZ^00000"
#define ADT_PV1 "PV1|1|O|CLINIC^101^1"
#define ADT_A04 ADT_MSH "\r" ADT_EVN "\r" ADT_PID "\r" ADT_PV1 "\r"

#define SIU_S12                                                                \
  "MSH|^~\\&|SCHED|CLINIC_EAST|PORTAL|PM|20261125090000||SIU^S12^SIU_S12|"     \
  "SCH-0001|P|2.5\r"                                                           \
  "SCH|APPT-1|APPT-1|||||ROUTINE^Routine visit|NORMAL|30|MIN\r"                \
  "EVN|S12|20261125085959\r"                                                   \
  "PID|1||FAKE-MRN-2||TESTPATIENT^BRAVO||19491231|F\r"                         \
  "AIL|1||CLINIC_EAST^ROOM 4\r"

#define OBR_F                                                                  \
  "OBR|1|PLO-1|FLO-1|58410-2^CBC^LN|||20261125080000|||||||||||||||"           \
  "20261125100000||LAB|F"
#define OBR_P                                                                  \
  "OBR|2|PLO-2|FLO-2|24323-8^CMP^LN|||20261125080000|||||||||||||||"           \
  "20261125100500||LAB|P^preliminary"
#define ORU_R01                                                                \
  "MSH|^~\\&|LABSYS|CLINIC_EAST|PORTAL|PM|20261125101500-0700||ORU^R01^"       \
  "ORU_R01|LAB-0042|P|2.5.1\r"                                                 \
  "PID|1||FAKE-MRN-3||TESTPATIENT^CHARLIE||19491231|F\r" OBR_F "\r"            \
  "OBX|1|NM|718-7^Hemoglobin^LN||13.2|g/dL|12-16|N|||F\r"                      \
  "NTE|1||TESTPATIENT^CHARLIE called, fake note\r" OBR_P "\r"                  \
  "OBX|1|NM|2345-7^Glucose^LN||99|mg/dL|70-99|N|||P\r"

/* Parse s[0..n) from an allocation of exactly n bytes: a sanitized build
 * catches any read past the end. */
static hl7_err_t parse_n(const char *s, size_t n, hl7_msg_t *m) {
  char *copy = malloc(n ? n : 1);
  assert_non_null(copy);
  memcpy(copy, s, n);
  hl7_err_t rc = hl7_msg_parse(copy, n, m);
  free(copy);
  return rc;
}

static hl7_err_t parse(const char *s, hl7_msg_t *m) {
  return parse_n(s, strlen(s), m);
}

static void parse_ok(const char *s, hl7_msg_t *m) {
  hl7_err_t rc = parse(s, m);
  if (rc != HL7_OK)
    fail_msg("parse: %s (%d)", hl7_err_str(rc), rc);
}

static void parse_err(const char *s, size_t n, hl7_err_t want) {
  hl7_msg_t m;
  hl7_err_t rc = parse_n(s, n, &m);
  if (rc != want)
    fail_msg("\"%.*s\": got %d (%s), want %d", (int)(n > 60 ? 60 : n), s, rc,
             hl7_err_str(rc), want);
}

#define PARSE_ERR(lit, want) parse_err((lit), sizeof(lit) - 1, (want))

/* Nothing of the PID (or NTE) above anywhere in the struct, padding
 * included. */
static void no_patient_data(const hl7_msg_t *m) {
  static const char *const needles[] = {"TESTPATIENT", "ALPHA",    "BRAVO",
                                        "CHARLIE",     "FAKE-MRN", "19491231",
                                        "FAKE STREET", "fake note"};
  for (size_t i = 0; i < sizeof(needles) / sizeof(needles[0]); i++)
    if (memmem(m, sizeof(*m), needles[i], strlen(needles[i])))
      fail_msg("\"%s\" found in hl7_msg_t", needles[i]);
}

/* ---- parsing ---- */

static void test_adt_a04(void **state) {
  (void)state;
  hl7_msg_t m;

  parse_ok(ADT_A04, &m);
  assert_int_equal(m.fs, '|');
  assert_int_equal(m.cs, '^');
  assert_int_equal(m.rs, '~');
  assert_int_equal(m.es, '\\');
  assert_int_equal(m.ss, '&');
  assert_string_equal(m.sending_app, "REGADT");
  assert_string_equal(m.sending_facility, "MCM");
  assert_string_equal(m.receiving_app, "IFENG");
  assert_string_equal(m.receiving_facility, "PM");
  assert_string_equal(m.datetime, "20261125083015-0700");
  assert_string_equal(m.type, "ADT");
  assert_string_equal(m.trigger, "A04");
  assert_string_equal(m.control_id, "MSG00001");
  assert_string_equal(m.processing_id, "P");
  assert_string_equal(m.version, "2.5.1");
  assert_string_equal(m.accept_ack, "");
  assert_string_equal(m.app_ack, "");
  assert_string_equal(m.event_time, "20261125083000-0700");
  assert_int_equal(m.n_obr, 0);
  assert_int_equal(m.obr_status, 0);
  no_patient_data(&m);
}

static void test_siu_s12_evn(void **state) {
  (void)state;
  hl7_msg_t m;

  parse_ok(SIU_S12, &m);
  assert_string_equal(m.type, "SIU");
  assert_string_equal(m.trigger, "S12");
  assert_string_equal(m.sending_facility, "CLINIC_EAST");
  assert_string_equal(m.control_id, "SCH-0001");
  assert_string_equal(m.version, "2.5");
  assert_string_equal(m.event_time, "20261125085959");
  no_patient_data(&m);

  /* The first EVN counts. */
  parse_ok(ADT_MSH "\r" ADT_EVN "\rEVN|A04|20990101\r", &m);
  assert_string_equal(m.event_time, "20261125083000-0700");
  /* EVN-2 with components, repetitions and an escape. */
  parse_ok(ADT_MSH "\rEVN|A04|2026\\X3131\\25^S~2027\r", &m);
  assert_string_equal(m.event_time, "20261125");
}

static void test_oru_two_obr(void **state) {
  (void)state;
  hl7_msg_t m;

  parse_ok(ORU_R01, &m);
  assert_string_equal(m.type, "ORU");
  assert_string_equal(m.trigger, "R01");
  assert_int_equal(m.n_obr, 2);
  assert_true(hl7_msg_has_result_status(&m, 'F'));
  assert_true(hl7_msg_has_result_status(&m, 'P'));
  assert_false(hl7_msg_has_result_status(&m, 'C'));
  assert_false(hl7_msg_has_result_status(&m, 'p'));
  assert_false(hl7_msg_has_result_status(&m, '\0'));
  assert_int_equal(m.obr_status, (1u << ('F' - 'A')) | (1u << ('P' - 'A')));
  assert_string_equal(m.event_time, "");
  no_patient_data(&m);

  /* corrected, escaped (\X43\ is C), and an OBR without field 25 */
  parse_ok("MSH|^~\\&|LAB|F|R|RF|2026||ORU^R01|C1\r"
           "OBR|1||||||||||||||||||||||||\\X43\\\r"
           "OBR|2\r",
           &m);
  assert_int_equal(m.n_obr, 2);
  assert_int_equal(m.obr_status, 1u << ('C' - 'A'));
  /* Z-segments and look-alikes are not OBR */
  parse_ok("MSH|^~\\&|LAB|F|R|RF|2026||ORU^R01|C1\r"
           "ZOB|1|||||||||||||||||||||||F\r"
           "OBRX|1|||||||||||||||||||||||F\r"
           "ZPI|TESTPATIENT^ALPHA|EVN|OBR\r",
           &m);
  assert_int_equal(m.n_obr, 0);
  assert_int_equal(m.obr_status, 0);
  no_patient_data(&m);
}

static void test_segment_separators(void **state) {
  (void)state;
  static const char *const msgs[] = {
      ADT_MSH "\r" ADT_EVN "\r" ADT_PID "\r" ADT_PV1 "\r",
      ADT_MSH "\n" ADT_EVN "\n" ADT_PID "\n" ADT_PV1 "\n",
      ADT_MSH "\r\n" ADT_EVN "\r\n" ADT_PID "\r\n" ADT_PV1 "\r\n",
      ADT_MSH "\r" ADT_EVN "\r" ADT_PID "\r" ADT_PV1,
      ADT_MSH "\r\n" ADT_PID "\r\n" ADT_EVN, /* EVN last, no separator */
      ADT_MSH "\r\r\n\n" ADT_EVN "\r\n\r\n", /* blank lines */
  };
  for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
    hl7_msg_t m;
    parse_ok(msgs[i], &m);
    assert_string_equal(m.control_id, "MSG00001");
    assert_string_equal(m.version, "2.5.1");
    assert_string_equal(m.event_time, "20261125083000-0700");
    no_patient_data(&m);
  }
  /* MSH alone, no separator at all */
  hl7_msg_t m;
  parse_ok(ADT_MSH, &m);
  assert_string_equal(m.version, "2.5.1");
}

/* data is not NUL-terminated: what follows len is not part of it. */
static void test_len_bounds(void **state) {
  (void)state;
  static const char s[] = "MSH|^~\\&|A|B|C|D|2026||ADT^A04|CTRL12|P|2.5";
  hl7_msg_t m;

  assert_int_equal(
      parse_n(s, strlen("MSH|^~\\&|A|B|C|D|2026||ADT^A04|CTRL1"), &m), HL7_OK);
  assert_string_equal(m.control_id, "CTRL1");
  assert_string_equal(m.processing_id, "");
  assert_int_equal(parse_n(s, strlen("MSH|^~\\&|A|B|C|D|2026||ADT^A04|"), &m),
                   HL7_E_REQUIRED);
  assert_string_equal(m.type, "ADT");
}

static void test_custom_encoding(void **state) {
  (void)state;
  hl7_msg_t m;

  /* '|' kept, other delimiters exotic: $ component, * repetition,
   * % escape, @ subcomponent. Standard ones are plain data here. */
  parse_ok("MSH|$*%@|APP^X&Y\\Z|FAC1$1.2.3$ISO*FAC2|R%F%APP|RF|20261125||"
           "SIU$S15$SIU_S12|C%S%1|T$T|2.4$USA|||AL\r"
           "EVN|S15|20261125120000$ignored\r"
           "PID|1||FAKE-MRN-9||TESTPATIENT$ALPHA\r",
           &m);
  assert_int_equal(m.cs, '$');
  assert_int_equal(m.rs, '*');
  assert_int_equal(m.es, '%');
  assert_int_equal(m.ss, '@');
  assert_string_equal(m.sending_app, "APP^X&Y\\Z");
  assert_string_equal(m.sending_facility, "FAC1");
  assert_string_equal(m.receiving_app, "R|APP");
  assert_string_equal(m.type, "SIU");
  assert_string_equal(m.trigger, "S15");
  assert_string_equal(m.control_id, "C$1");
  assert_string_equal(m.processing_id, "T");
  assert_string_equal(m.version, "2.4");
  assert_string_equal(m.accept_ack, "AL");
  assert_string_equal(m.event_time, "20261125120000");
  no_patient_data(&m);

  /* A field separator other than '|': '|' is data. */
  parse_ok("MSH#^~\\&#A|B#FAC^X#RAPP#RFAC#20261125##ADT^A04^ADT_A01#"
           "ID\\F\\7#P#2.5.1\r"
           "EVN#A04#20261125070000\r"
           "OBR#1########################F\r",
           &m);
  assert_int_equal(m.fs, '#');
  assert_string_equal(m.sending_app, "A|B");
  assert_string_equal(m.sending_facility, "FAC");
  assert_string_equal(m.control_id, "ID#7");
  assert_string_equal(m.event_time, "20261125070000");
  assert_int_equal(m.n_obr, 1);
  assert_true(hl7_msg_has_result_status(&m, 'F'));
}

static void test_truncation_char(void **state) {
  (void)state;
  hl7_msg_t m;

  parse_ok("MSH|^~\\&#|APP\\P\\X|FAC#|R|RF|20261125||ORU^R01^ORU_R01|"
           "C#1|P|2.7\r",
           &m);
  assert_int_equal(m.cs, '^');
  assert_int_equal(m.ss, '&');
  assert_string_equal(m.sending_app, "APP#X");
  assert_string_equal(m.sending_facility, "FAC#");
  assert_string_equal(m.control_id, "C#1");
  assert_string_equal(m.version, "2.7");

  /* another truncation character: \P\ is that one */
  parse_ok("MSH|^~\\&!|APP\\P\\|F|R|RF|2026||ADT^A04|1", &m);
  assert_string_equal(m.sending_app, "APP!");
}

static void test_escapes(void **state) {
  (void)state;
  hl7_msg_t m;

  parse_ok("MSH|^~\\&|LAB\\F\\SYS|A\\S\\B\\T\\C\\R\\D|\\X41\\\\X4243\\x|"
           "\\.br\\R\\H\\F\\N\\|2026||ADT^A04|ID\\E\\1\\X41\\|P|2.5\r",
           &m);
  assert_string_equal(m.sending_app, "LAB|SYS");
  assert_string_equal(m.sending_facility, "A^B&C~D");
  assert_string_equal(m.receiving_app, "ABCx");
  assert_string_equal(m.receiving_facility, "RF");
  assert_string_equal(m.control_id, "ID\\1A");

  /* unterminated escape: literal; bad hex, unknown or empty: dropped */
  parse_ok("MSH|^~\\&|C:\\dir|A\\XZZ\\B\\\\C\\X4\\D|\\Cxxyy\\E\\M4\\|R|"
           "2026||ADT^A04|1",
           &m);
  assert_string_equal(m.sending_app, "C:\\dir");
  assert_string_equal(m.sending_facility, "ABCD");
  assert_string_equal(m.receiving_app, "E");

  /* a decoded tab or CR is text; a decoded NUL or 0x1C is refused */
  parse_ok("MSH|^~\\&|A\\X09\\B|C\\X0D0A\\D|R|RF|2026||ADT^A04|1", &m);
  assert_string_equal(m.sending_app, "A\tB");
  assert_string_equal(m.sending_facility, "C\r\nD");
  PARSE_ERR("MSH|^~\\&|A\\X00\\B|F|R|RF|2026||ADT^A04|1", HL7_E_CHARS);
  PARSE_ERR("MSH|^~\\&|A|F|R|RF|2026||ADT^A04|\\X1C\\", HL7_E_CHARS);
}

static void test_repetitions_components(void **state) {
  (void)state;
  hl7_msg_t m;

  parse_ok("MSH|^~\\&|APP1^2.16.840.1.113883^ISO~APP2|FAC1~FAC2|"
           "RAPP^X^Y|RFAC~Z|20261125083015^S||ADT^A04^ADT_A01~ORU^R01|"
           "CTRL~1|P^T|2.5.1^USA^X|||NE^X|AL~NE\r",
           &m);
  assert_string_equal(m.sending_app, "APP1");
  assert_string_equal(m.sending_facility, "FAC1");
  assert_string_equal(m.receiving_app, "RAPP");
  assert_string_equal(m.receiving_facility, "RFAC");
  assert_string_equal(m.datetime, "20261125083015");
  assert_string_equal(m.type, "ADT");
  assert_string_equal(m.trigger, "A04");
  /* MSH-10 is kept whole: it is part of the duplicate key */
  assert_string_equal(m.control_id, "CTRL~1");
  assert_string_equal(m.processing_id, "P");
  assert_string_equal(m.version, "2.5.1");
  assert_string_equal(m.accept_ack, "NE");
  assert_string_equal(m.app_ack, "AL");

  parse_ok("MSH|^~\\&|A&SUB^B|F^G~H^I|R|RF|2026||ADT^A04|1", &m);
  assert_string_equal(m.sending_app, "A&SUB");
  assert_string_equal(m.sending_facility, "F");
}

static void test_required(void **state) {
  (void)state;
  hl7_msg_t m;

  /* MSH-9 empty: MSH-10 and the rest still read */
  assert_int_equal(parse("MSH|^~\\&|APP|FAC|R|RF|2026||"
                         "|CTRL9|P|2.5\rEVN|A04|20261125\r",
                         &m),
                   HL7_E_REQUIRED);
  assert_string_equal(m.control_id, "CTRL9");
  assert_string_equal(m.sending_app, "APP");
  assert_string_equal(m.version, "2.5");
  /* type without trigger, trigger without type */
  assert_int_equal(parse("MSH|^~\\&|APP|FAC|R|RF|2026||ADT|C1|P|2.3", &m),
                   HL7_E_REQUIRED);
  assert_string_equal(m.type, "ADT");
  assert_string_equal(m.control_id, "C1");
  assert_int_equal(parse("MSH|^~\\&|APP|FAC|R|RF|2026||^A04|C1", &m),
                   HL7_E_REQUIRED);
  /* MSH-10 missing: empty, or the segment ends before it */
  assert_int_equal(parse("MSH|^~\\&|APP|FAC|R|RF|2026||ADT^A04||P|2.5", &m),
                   HL7_E_REQUIRED);
  assert_string_equal(m.trigger, "A04");
  assert_int_equal(parse("MSH|^~\\&|APP|FAC|R|RF|2026||ADT^A04\rEVN|A04|1\r"
                         "PID|1||X||TESTPATIENT^ALPHA|9|1|1|1|1|1|1|1|1",
                         &m),
                   HL7_E_REQUIRED);
  assert_int_equal(parse("MSH|^~\\&", &m), HL7_E_REQUIRED);
}

static void test_no_msh(void **state) {
  (void)state;
  PARSE_ERR("", HL7_E_NOMSH);
  PARSE_ERR("MS", HL7_E_NOMSH);
  PARSE_ERR("PID|1||X||TESTPATIENT^ALPHA\r", HL7_E_NOMSH);
  PARSE_ERR("\rMSH|^~\\&|A|B|C|D|2026||ADT^A04|1", HL7_E_NOMSH);
  PARSE_ERR("msh|^~\\&|A|B|C|D|2026||ADT^A04|1", HL7_E_NOMSH);
  PARSE_ERR("FHS|^~\\&|A\rMSH|^~\\&|A|B|C|D|2026||ADT^A04|1", HL7_E_NOMSH);
}

static void test_bad_encoding(void **state) {
  (void)state;
  static const char *const bad[] = {
      "MSH",                   /* MSH-1 missing */
      "MSH\r",                 /* CR as separator */
      "MSH|",                  /* MSH-2 missing */
      "MSH||A|B",              /* MSH-2 empty */
      "MSH|^~\\|A|B",          /* too short */
      "MSH|^~|A|B",            /* too short */
      "MSH|^~\\&#!|A|B",       /* too long */
      "MSH|^~\\\\|A|B",        /* duplicate */
      "MSH|^~^&|A|B",          /* duplicate */
      "MSH|^~\\&^|A|B",        /* duplicate truncation character */
      "MSH|^~A&|A|B",          /* alphanumeric */
      "MSH|^~\\1|A|B",         /* digit */
      "MSH|^ \\&|A|B",         /* space */
      "MSH|^~\\&\t|A|B",       /* tab */
      "MSHA^~\\&A",            /* alphanumeric field separator */
      "MSH ^~\\& A",           /* space field separator */
      "MSH^~\\&|APP|FAC",      /* separator missing */
      "MSH|^~\\&\xc3\xa9|A|B", /* not ASCII */
      "MSH\x1c^~\\&\x1cZ\x1c", /* control field separator */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    parse_err(bad[i], strlen(bad[i]), HL7_E_ENCODING);
  /* MSH-2 at the end of the segment is fine: then MSH-9 is missing */
  PARSE_ERR("MSH|^~\\&\r", HL7_E_REQUIRED);
}

static void test_control_chars(void **state) {
  (void)state;
  static const char nul[] = "MSH|^~\\&|AP\0P|FAC|R|RF|2026||ADT^A04|C1";
  hl7_msg_t m;

  parse_err(nul, sizeof(nul) - 1, HL7_E_CHARS);
  PARSE_ERR("MSH|^~\\&|APP|FAC|R|RF|2026||ADT^A04|C1|\x01", HL7_E_CHARS);
  PARSE_ERR("MSH|^~\\&|APP|FAC|R|RF|2026||ADT^A04|C1|\x7f", HL7_E_CHARS);

  /* in a later segment: MSH was read, so an AE can echo MSH-10 */
  assert_int_equal(parse(ADT_MSH "\rPID|1||X||TESTPATIENT\x1c^ALPHA\r", &m),
                   HL7_E_CHARS);
  assert_string_equal(m.control_id, "MSG00001");
  no_patient_data(&m);
  assert_int_equal(parse(ADT_MSH "\rOBX|1|TX|||line\x0bone\r", &m),
                   HL7_E_CHARS);
  /* a bad byte in MSH-12 leaves MSH-10 filled, MSH-12 not */
  assert_int_equal(parse("MSH|^~\\&|A|F|R|RF|2026||ADT^A04|C1|P|2.\x02", &m),
                   HL7_E_CHARS);
  assert_string_equal(m.control_id, "C1");
  assert_string_equal(m.processing_id, "P");
  assert_string_equal(m.version, "");

  /* tab and bytes past ASCII are text */
  parse_ok(ADT_MSH "\rNTE|1||tab\there, caf\xc3\xa9\r", &m);
}

static void test_too_long(void **state) {
  (void)state;
  char buf[2048];
  hl7_msg_t m;
  char f200[201], f201[202];

  memset(f200, 'a', 200);
  f200[200] = '\0';
  memset(f201, 'b', 201);
  f201[201] = '\0';

  snprintf(buf, sizeof(buf), "MSH|^~\\&|%s|FAC|R|RF|2026||ADT^A04|%s", f200,
           f200);
  parse_ok(buf, &m);
  assert_int_equal(strlen(m.sending_app), 200);
  assert_int_equal(strlen(m.control_id), 200);

  snprintf(buf, sizeof(buf), "MSH|^~\\&|%s|FAC|R|RF|2026||ADT^A04|C1", f201);
  assert_int_equal(parse(buf, &m), HL7_E_TOO_LONG);
  assert_string_equal(m.sending_app, "");
  snprintf(buf, sizeof(buf), "MSH|^~\\&|A|FAC|R|RF|2026||ADT^A04|%s", f201);
  assert_int_equal(parse(buf, &m), HL7_E_TOO_LONG);
  assert_string_equal(m.control_id, "");
  assert_string_equal(m.trigger, "A04");

  /* decoded length counts: 201 escapes of one byte each are too long,
   * 300 bytes of formatting escapes decode to nothing */
  char *p = buf + sprintf(buf, "MSH|^~\\&|");
  for (int i = 0; i < 201; i++)
    p += sprintf(p, "\\T\\");
  sprintf(p, "|F|R|RF|2026||ADT^A04|C1");
  assert_int_equal(parse(buf, &m), HL7_E_TOO_LONG);
  p = buf + sprintf(buf, "MSH|^~\\&|");
  for (int i = 0; i < 60; i++)
    p += sprintf(p, "\\.br\\");
  sprintf(p, "X|F|R|RF|2026||ADT^A04|C1");
  parse_ok(buf, &m);
  assert_string_equal(m.sending_app, "X");

  /* only the kept component counts; unkept fields may be long */
  snprintf(buf, sizeof(buf), "MSH|^~\\&|A|FAC^%s~%s|R|RF|2026||ADT^A04|C1|P",
           f201, f201);
  parse_ok(buf, &m);
  assert_string_equal(m.sending_facility, "FAC");
  memset(buf, 0, sizeof(buf));
  p = buf + sprintf(buf, ADT_MSH "\rPID|1||");
  memset(p, 'x', 1500);
  parse_ok(buf, &m);

  /* the short arrays: an 8-byte trigger, a 16-byte version */
  PARSE_ERR("MSH|^~\\&|A|F|R|RF|2026||ADT^A04XXXXX|C1", HL7_E_TOO_LONG);
  PARSE_ERR("MSH|^~\\&|A|F|R|RF|2026||ADT^A04|C1|P|2.5.1.1.1.1.1.10",
            HL7_E_TOO_LONG);
  parse_ok("MSH|^~\\&|A|F|R|RF|2026||ADT^A04|C1|P|2.5.1.1.1.1.1.1", &m);
  assert_string_equal(m.version, "2.5.1.1.1.1.1.1");
  PARSE_ERR(ADT_MSH "\rEVN|A04|20261125083000.1234+0700123456789\r",
            HL7_E_TOO_LONG);
}

static void test_no_patient_data_anywhere(void **state) {
  (void)state;
  static const char *const msgs[] = {ADT_A04, SIU_S12, ORU_R01,
                                     ADT_MSH "\r" ADT_PID "\x01"};
  for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
    hl7_msg_t m;
    memset(&m, 0x55, sizeof(m));
    (void)parse(msgs[i], &m);
    no_patient_data(&m);
  }
}

static void test_err_str(void **state) {
  (void)state;
  static const hl7_err_t all[] = {HL7_OK,         HL7_E_NOMSH, HL7_E_ENCODING,
                                  HL7_E_REQUIRED, HL7_E_CHARS, HL7_E_TOO_LONG};
  const size_t n = sizeof(all) / sizeof(all[0]);
  for (size_t i = 0; i < n; i++) {
    const char *s = hl7_err_str(all[i]);
    assert_non_null(s);
    assert_true(strlen(s) > 0);
    for (size_t j = 0; j < i; j++)
      assert_string_not_equal(s, hl7_err_str(all[j]));
  }
  assert_string_equal(hl7_err_str(HL7_E_NOMSH), "no MSH segment");
  assert_string_equal(hl7_err_str((hl7_err_t)-99), "unknown error");
}

/* ---- DTM ---- */

static int32_t civil(int y, int mo, int d) {
  struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d};
  return (int32_t)(timegm(&tm) / 86400);
}

static void dtm_is(const char *s, int32_t want) {
  int32_t day = -12345;
  int rc = hl7_dtm_day(s, &day);
  if (rc != 0 || day != want)
    fail_msg("\"%s\": rc %d, day %d, want %d", s, rc, day, want);
}

static void dtm_bad(const char *s) {
  int32_t day = -12345;
  if (hl7_dtm_day(s, &day) != -1)
    fail_msg("\"%s\" accepted as day %d", s, day);
  assert_int_equal(day, -12345);
}

static void test_dtm_day(void **state) {
  (void)state;
  setenv("TZ", "America/Denver", 1);
  tzset();

  assert_int_equal(civil(2026, 11, 25), 20782);
  dtm_is("20261125", 20782);
  dtm_is("19700101", 0);
  dtm_is("19691231", -1);
  dtm_is("2026112508", 20782);
  dtm_is("202611250830", 20782);
  dtm_is("20261125083015", 20782);
  dtm_is("20261125083015.1", 20782);
  dtm_is("20261125083015.1234", 20782);
  dtm_is("20240229", civil(2024, 2, 29));
  dtm_is("20000229", civil(2000, 2, 29));
  dtm_is("20261231235959", civil(2026, 12, 31));

  /* Without an offset the date is read as written, late or early. */
  dtm_is("20261126030000", civil(2026, 11, 26));
  dtm_is("20261125235959", civil(2026, 11, 25));
  /* With one, the instant falls on Denver's date: 03:00Z is 20:00 MST
   * the day before; 23:00-0800 is 00:00 MST the next day. */
  dtm_is("20261126030000+0000", civil(2026, 11, 25));
  dtm_is("20261125230000-0800", civil(2026, 11, 26));
  dtm_is("20261125225959-0800", civil(2026, 11, 25));
  dtm_is("20261126083000+0530", civil(2026, 11, 25)); /* 03:00Z */
  dtm_is("20261126143000+0730", civil(2026, 11, 26)); /* 07:00Z, 00:00 */
  dtm_is("2026112603+0000", civil(2026, 11, 25));
  /* summer: MDT is -0600 */
  dtm_is("20260701055959+0000", civil(2026, 6, 30));
  dtm_is("20260701060000+0000", civil(2026, 7, 1));
  dtm_is("20261231235959.99-0900", civil(2027, 1, 1));
  /* a date alone names a day: its offset moves nothing */
  dtm_is("20261125+1400", 20782);
  dtm_is("20261125-1200", 20782);

  dtm_bad("");
  dtm_bad("2026");
  dtm_bad("202611");
  dtm_bad("2026112");
  dtm_bad("20261301");
  dtm_bad("20260001");
  dtm_bad("20261100");
  dtm_bad("20260230");
  dtm_bad("20250229");
  dtm_bad("21000229");
  dtm_bad("20260431");
  dtm_bad("2026112A");
  dtm_bad("ABCDEFGH");
  dtm_bad("2026-11-25");
  dtm_bad("20261125 ");
  dtm_bad(" 20261125");
  dtm_bad("202611251");
  dtm_bad("2026112524");
  dtm_bad("202611252360");
  dtm_bad("20261125235960");
  dtm_bad("20261125235959.");
  dtm_bad("20261125235959.12345");
  dtm_bad("202611252359.5");
  dtm_bad("20261125235959+07");
  dtm_bad("20261125235959+070");
  dtm_bad("20261125235959+07000");
  dtm_bad("20261125235959+0760");
  dtm_bad("20261125235959+2400");
  dtm_bad("20261125235959Z");
  dtm_bad("20261125235959+-0700");
}

/* ---- ACK ---- */

#define NOW 1795620645LL /* 2026-11-25 15:30:45 UTC */
#define NOW_TS "20261125153045+0000"

static int ack(const hl7_msg_t *m, hl7_ack_kind_t k, int code, const char *text,
               const char *id, char *out, size_t outlen) {
  return hl7_ack_build(m, k, code, text, id, NOW, out, outlen);
}

static void ack_is(const char *got, int n, const char *want) {
  if (n < 0 || (size_t)n != strlen(want) || memcmp(got, want, (size_t)n))
    fail_msg("ACK\n got  %.*s\n want %s", n < 0 ? 0 : n, got, want);
}

static void test_ack_aa(void **state) {
  (void)state;
  hl7_msg_t m;
  char out[HL7_ACK_MAX];
  char want[512];

  parse_ok(ADT_A04, &m);
  snprintf(want, sizeof(want),
           "\x0bMSH|^~\\&|%s|%s|%s|%s|%s||ACK^%s^ACK|%s|%s|%s\rMSA|%s|%s\r"
           "\x1c\r",
           "IFENG", "PM", "REGADT", "MCM", NOW_TS, "A04", "PM-ACK-1", "P",
           "2.5.1", "AA", "MSG00001");
  int n = ack(&m, HL7_ACK_ACCEPT, 0, NULL, "PM-ACK-1", out, sizeof(out));
  ack_is(out, n, want);
  /* the same, literally */
  ack_is(out, n,
         "\x0bMSH|^~\\&|IFENG|PM|REGADT|MCM|20261125153045+0000||ACK^A04^ACK|"
         "PM-ACK-1|P|2.5.1\rMSA|AA|MSG00001\r\x1c\r");

  /* it parses as an HL7 message itself, with the sides swapped */
  hl7_msg_t a;
  assert_int_equal(hl7_msg_parse(out + 1, (size_t)n - 3, &a), HL7_OK);
  assert_string_equal(a.type, "ACK");
  assert_string_equal(a.trigger, "A04");
  assert_string_equal(a.control_id, "PM-ACK-1");
  assert_string_equal(a.sending_app, m.receiving_app);
  assert_string_equal(a.receiving_facility, m.sending_facility);
  assert_string_equal(a.datetime, NOW_TS);

  /* every shorter buffer is refused, the exact one is enough */
  for (int len = 0; len < n; len++)
    assert_int_equal(
        ack(&m, HL7_ACK_ACCEPT, 0, NULL, "PM-ACK-1", out, (size_t)len), -1);
  assert_int_equal(ack(&m, HL7_ACK_ACCEPT, 0, NULL, "PM-ACK-1", out, (size_t)n),
                   n);

  /* the epoch, and processing id / version defaults */
  hl7_msg_t z;
  memset(&z, 0, sizeof(z));
  strcpy(z.control_id, "X");
  strcpy(z.trigger, "S12");
  n = hl7_ack_build(&z, HL7_ACK_ACCEPT, 0, NULL, "1", 0, out, sizeof(out));
  ack_is(out, n,
         "\x0bMSH|^~\\&|||||19700101000000+0000||ACK^S12^ACK|1|P|2.5\r"
         "MSA|AA|X\r\x1c\r");
}

static void test_ack_ae_err(void **state) {
  (void)state;
  hl7_msg_t m;
  char out[HL7_ACK_MAX];

  parse_ok(SIU_S12, &m);
  int n = ack(&m, HL7_ACK_ERROR, HL7_ERR_REQUIRED_FIELD,
              "required field missing", "A2", out, sizeof(out));
  ack_is(out, n,
         "\x0bMSH|^~\\&|PORTAL|PM|SCHED|CLINIC_EAST|" NOW_TS
         "||ACK^S12^ACK|A2|P|2.5\rMSA|AE|SCH-0001\r"
         "ERR|||101^required field missing^HL70357|E\r\x1c\r");
  n = ack(&m, HL7_ACK_REJECT, HL7_ERR_UNSUPPORTED_VERSION,
          "unsupported version", "A3", out, sizeof(out));
  ack_is(out, n,
         "\x0bMSH|^~\\&|PORTAL|PM|SCHED|CLINIC_EAST|" NOW_TS
         "||ACK^S12^ACK|A3|P|2.5\rMSA|AR|SCH-0001\r"
         "ERR|||203^unsupported version^HL70357|E\r\x1c\r");
  /* our text is escaped too */
  n = ack(&m, HL7_ACK_ERROR, HL7_ERR_DATA_TYPE, "a|b^c", "A4", out,
          sizeof(out));
  static const char err[] = "ERR|||102^a\\F\\b\\S\\c^HL70357|E\r";
  assert_non_null(memmem(out, (size_t)n, err, sizeof(err) - 1));
}

static void test_ack_enhanced(void **state) {
  (void)state;
  static const struct {
    const char *msg;
    const char *codes[3];
  } cases[] = {
      {"MSH|^~\\&|A|F|R|RF|2026||ADT^A04|1|P|2.5", {"AA", "AE", "AR"}},
      {"MSH|^~\\&|A|F|R|RF|2026||ADT^A04|1|P|2.5|||AL|NE", {"CA", "CE", "CR"}},
      {"MSH|^~\\&|A|F|R|RF|2026||ADT^A04|1|P|2.5|||NE", {"CA", "CE", "CR"}},
      {"MSH|^~\\&|A|F|R|RF|2026||ADT^A04|1|P|2.5||||AL", {"CA", "CE", "CR"}},
      {"MSH|^~\\&|A|F|R|RF|2026||ADT^A04|1|P|2.5|||||", {"AA", "AE", "AR"}},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    hl7_msg_t m;
    char out[HL7_ACK_MAX], msa[32];
    parse_ok(cases[i].msg, &m);
    for (int k = 0; k < 3; k++) {
      assert_string_equal(hl7_ack_code(&m, (hl7_ack_kind_t)k),
                          cases[i].codes[k]);
      int n = ack(&m, (hl7_ack_kind_t)k, 0, NULL, "Q", out, sizeof(out));
      snprintf(msa, sizeof(msa), "\rMSA|%s|1\r", cases[i].codes[k]);
      assert_true(n > 0);
      assert_non_null(memmem(out, (size_t)n, msa, strlen(msa)));
    }
  }
}

static void test_ack_reescape(void **state) {
  (void)state;
  hl7_msg_t m;
  char out[HL7_ACK_MAX];

  /* decoded from escapes and from another encoding: re-escaped for ours */
  parse_ok("MSH#$*%@#A|P^P#F&~\\#R%X0D%X#RF#2026##ADT$A04#C|1^2%X0A%#"
           "T#2.5.1",
           &m);
  assert_string_equal(m.control_id, "C|1^2\n");
  int n = ack(&m, HL7_ACK_ACCEPT, 0, NULL, "K^1", out, sizeof(out));
  ack_is(out, n,
         "\x0bMSH|^~\\&|R\\X0D\\X|RF|A\\F\\P\\S\\P|F\\T\\\\R\\\\E\\|" NOW_TS
         "||ACK^A04^ACK|K\\S\\1|T|2.5.1\rMSA|AA|C\\F\\1\\S\\2\\X0A\\\r\x1c\r");

  /* MSA-2 decodes back to MSH-10 */
  hl7_msg_t a;
  const char *msa = memmem(out, (size_t)n, "\rMSA|AA|", 8);
  assert_non_null(msa);
  char again[256];
  int k = snprintf(again, sizeof(again), "MSH|^~\\&|||||||ACK^A|%.*s",
                   (int)(out + n - 3 - (msa + 8)), msa + 8);
  assert_int_equal(hl7_msg_parse(again, (size_t)k, &a), HL7_OK);
  assert_string_equal(a.control_id, m.control_id);
  assert_int_equal(hl7_msg_parse(out + 1, (size_t)n - 3, &a), HL7_OK);
  assert_string_equal(a.sending_app, m.receiving_app);
  assert_string_equal(a.receiving_app, m.sending_app);
  assert_string_equal(a.receiving_facility, m.sending_facility);
  assert_string_equal(a.control_id, "K^1");

  /* a hand-filled struct: every control byte escaped, and the worst case
   * fits HL7_ACK_MAX */
  memset(&m, '\r', sizeof(m));
  m.sending_app[HL7_FIELD_MAX] = m.sending_facility[HL7_FIELD_MAX] = '\0';
  m.receiving_app[HL7_FIELD_MAX] = '\0';
  m.receiving_facility[HL7_FIELD_MAX] = m.control_id[HL7_FIELD_MAX] = '\0';
  m.trigger[7] = m.processing_id[7] = m.version[15] = '\0';
  m.accept_ack[0] = m.app_ack[0] = '\0';
  char text[HL7_FIELD_MAX + 1], id[HL7_FIELD_MAX + 1];
  memset(text, 0x1c, HL7_FIELD_MAX);
  text[HL7_FIELD_MAX] = '\0';
  memset(id, 0x0b, HL7_FIELD_MAX);
  id[HL7_FIELD_MAX] = '\0';
  n = ack(&m, HL7_ACK_ERROR, -2147483647 - 1, text, id, out, sizeof(out));
  assert_true(n > 0);
  assert_int_equal(out[0], 0x0b);
  assert_int_equal(out[n - 2], 0x1c);
  assert_int_equal(out[n - 1], '\r');
  int crs = 0;
  for (int i = 1; i < n - 2; i++) {
    assert_true(out[i] != 0x0b && out[i] != 0x1c);
    crs += out[i] == '\r';
  }
  assert_int_equal(crs, 3); /* MSH, MSA, ERR */
  /* without a NUL in the arrays, nothing is read past them */
  memset(&m, 'x', sizeof(m));
  n = ack(&m, HL7_ACK_ACCEPT, 0, NULL, "1", out, sizeof(out));
  assert_true(n > 0);
}

/* A partly parsed message: empty fields, trigger and MSH-10 included. */
static void test_ack_partial(void **state) {
  (void)state;
  hl7_msg_t m;
  char out[HL7_ACK_MAX];

  assert_int_equal(
      parse("MSH|^~\\&|APP|FAC|RAPP|RFAC|2026||ADT|CTRL7|D|2.3", &m),
      HL7_E_REQUIRED);
  int n = ack(&m, HL7_ACK_ERROR, HL7_ERR_REQUIRED_FIELD,
              "required field missing", "A9", out, sizeof(out));
  ack_is(out, n,
         "\x0bMSH|^~\\&|RAPP|RFAC|APP|FAC|" NOW_TS
         "||ACK^^ACK|A9|D|2.3\rMSA|AE|CTRL7\r"
         "ERR|||101^required field missing^HL70357|E\r\x1c\r");

  assert_int_equal(parse("PID|1||X||TESTPATIENT^ALPHA", &m), HL7_E_NOMSH);
  n = ack(&m, HL7_ACK_ERROR, HL7_ERR_SEGMENT_SEQUENCE, "no MSH segment", "A10",
          out, sizeof(out));
  ack_is(out, n,
         "\x0bMSH|^~\\&|||||" NOW_TS "||ACK^^ACK|A10|P|2.5\rMSA|AE|\r"
         "ERR|||100^no MSH segment^HL70357|E\r\x1c\r");
  assert_null(memmem(out, (size_t)n, "TESTPATIENT", 11));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_adt_a04),
      cmocka_unit_test(test_siu_s12_evn),
      cmocka_unit_test(test_oru_two_obr),
      cmocka_unit_test(test_segment_separators),
      cmocka_unit_test(test_len_bounds),
      cmocka_unit_test(test_custom_encoding),
      cmocka_unit_test(test_truncation_char),
      cmocka_unit_test(test_escapes),
      cmocka_unit_test(test_repetitions_components),
      cmocka_unit_test(test_required),
      cmocka_unit_test(test_no_msh),
      cmocka_unit_test(test_bad_encoding),
      cmocka_unit_test(test_control_chars),
      cmocka_unit_test(test_too_long),
      cmocka_unit_test(test_no_patient_data_anywhere),
      cmocka_unit_test(test_err_str),
      cmocka_unit_test(test_dtm_day),
      cmocka_unit_test(test_ack_aa),
      cmocka_unit_test(test_ack_ae_err),
      cmocka_unit_test(test_ack_enhanced),
      cmocka_unit_test(test_ack_reescape),
      cmocka_unit_test(test_ack_partial),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
