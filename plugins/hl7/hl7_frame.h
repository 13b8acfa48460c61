/*
 * MLLP framing (HL7 v2 Minimal Lower Layer Protocol): a message is
 * 0x0B <bytes> 0x1C 0x0D. Pure: no I/O, no allocation past init, so the
 * libFuzzer harness drives it directly.
 *
 * Bytes before a start block are junk: skipped and reported (once per run
 * of junk). A frame longer than max_message is reported once as oversize
 * and its bytes are discarded up to its end block. 0x1C not followed by
 * 0x0D is taken as data (0x1C is not valid HL7 text; the parser refuses
 * it). A start block inside a frame restarts the frame (the sender gave up
 * on the previous one): the partial one is reported as junk.
 */
#ifndef HL7_FRAME_H
#define HL7_FRAME_H

#include <stddef.h>

#define HL7_SB 0x0B
#define HL7_EB 0x1C
#define HL7_CR 0x0D

typedef enum {
  HL7_FRAME = 1,   /* data/len: one message, without the envelope */
  HL7_JUNK = 2,    /* len: bytes skipped outside a frame (data NULL) */
  HL7_OVERSIZE = 3 /* a frame past max_message was dropped (data NULL,
                      len: its size so far); reported when it exceeds */
} hl7_frame_event_t;

/* data is valid only during the call. Return 0 to go on, nonzero to stop
 * feeding at once (hl7_frame_feed then returns that value). */
typedef int (*hl7_frame_cb)(void *arg, hl7_frame_event_t ev, const char *data,
                            size_t len);

typedef struct hl7_framer {
  char *buf;
  size_t len, cap, max;
  int state;      /* outside, in frame, after EB, discarding */
  size_t junk;    /* junk bytes of the current run */
  size_t dropped; /* bytes of oversize frames discarded, envelope
                     included: cumulative */
} hl7_framer_t;

/* max_message: largest message accepted (bytes between the envelope).
 * Returns 0, or -1 when out of memory. The buffer grows as needed up to
 * max_message. */
int hl7_framer_init(hl7_framer_t *f, size_t max_message);
void hl7_framer_free(hl7_framer_t *f);

/* Feed received bytes; calls cb for each event in order. Returns 0, the
 * callback's nonzero value, or -1 when out of memory. */
int hl7_framer_feed(hl7_framer_t *f, const char *p, size_t n, hl7_frame_cb cb,
                    void *arg);

/* 1 while a frame has started and not ended (for the frame timeout). */
int hl7_framer_in_frame(const hl7_framer_t *f);

#endif
