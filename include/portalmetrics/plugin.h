/*
 * portalmetrics plugin ABI, version 1.
 *
 * This header is the whole contract between portalmetricsd and a collector
 * plugin. A plugin includes this header (and libuv's, which it includes),
 * links against its own libraries, and exports one symbol:
 *
 *     PM_PLUGIN_EXPORT const pm_plugin_t *pm_plugin_entry(void);
 *
 * which returns a descriptor that lives as long as the shared object is
 * loaded (a static const object is the norm).
 *
 * Versioning. The descriptor starts with the ABI major and minor the plugin
 * was built against and the descriptor's own size. The daemon refuses a
 * plugin whose major differs from its own; a minor that is newer on either
 * side works: the daemon reads only the descriptor fields that fit in the
 * size the plugin reports, and a plugin calls only the host functions that
 * fit in the host table's `size` (use PM_HOST_HAS()). Fields and functions
 * are only ever appended, never reordered or removed, within one major.
 * pm_sample_t, pm_label_t, pm_setting_decl_t and pm_metric_decl_t are
 * frozen for major 1.
 *
 * Threads. Every call the daemon makes into a plugin, and every call a
 * plugin makes into the host, names its thread below:
 *   - loop thread: the daemon's single libuv loop thread. create, start,
 *     stop, destroy and every completion callback run there.
 *   - worker thread: one of the daemon's collector worker threads. A poll
 *     plugin's collect runs there and may block, up to its deadline.
 * Host functions marked "any thread" may be called from either, and from
 * threads the plugin starts itself.
 *
 * Errors. Every function that can fail returns 0 or a negative PM_E* code.
 * host->strerror(code) explains a code in one line. A function that takes a
 * callback and returns an error never calls that callback.
 *
 * Building. `pkg-config --cflags --libs portalmetrics-plugin`. uv.h needs
 * POSIX declarations: with a strict -std=c17 define _DEFAULT_SOURCE (the
 * .pc file does) or _POSIX_C_SOURCE=200809L; -std=gnu17 needs nothing.
 *
 * Privacy. Labels say where a number comes from (clinic, site, source),
 * never who: no patient identifier, name, date of birth or free text may
 * ever be put in a label, a log line or a file.
 */
#ifndef PORTALMETRICS_PLUGIN_H
#define PORTALMETRICS_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PM_ABI_MAJOR 1
#define PM_ABI_MINOR 0

#if defined(__GNUC__)
#define PM_PLUGIN_EXPORT __attribute__((visibility("default")))
#define PM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define PM_PLUGIN_EXPORT
#define PM_PRINTF(f, a)
#endif

/* The symbol the loader looks up in every plugin. */
#define PM_PLUGIN_ENTRY_SYMBOL "pm_plugin_entry"

/* ---------------------------------------------------------------------
 * Error codes. 0 is success; every error is negative.
 * ------------------------------------------------------------------- */
enum pm_error {
  PM_OK = 0,
  PM_EINVAL = -1,        /* an argument is invalid (NULL, out of range) */
  PM_ENOMEM = -2,        /* out of memory */
  PM_EMETRIC = -3,       /* metric name invalid, or not declared */
  PM_ELABEL = -4,        /* label key/value invalid, too many, too long */
  PM_ETS = -5,           /* timestamp too old or too far in the future */
  PM_EVALUE = -6,        /* value is NaN or infinite */
  PM_EKIND = -7,         /* series already has the other kind */
  PM_ESERIES = -8,       /* the collector's max_series is reached */
  PM_EBUSY = -9,         /* the daemon cannot take samples now: retry later */
  PM_ESTOPPED = -10,     /* the instance is stopping or its run was abandoned */
  PM_ENOTFOUND = -11,    /* no such setting */
  PM_ETYPE = -12,        /* the setting has another type */
  PM_ETIMEOUT = -13,     /* an operation ran out of time */
  PM_EIO = -14,          /* an I/O error (file, socket) */
  PM_EPEER = -15,        /* the peer answered something malformed or an error */
  PM_EUNREACHABLE = -16, /* the peer could not be reached */
  PM_EAUTH = -17,        /* the peer refused our credentials */
  PM_ECONFIG = -18,      /* a setting's value cannot be used */
  PM_EABI = -19,         /* ABI mismatch */
  PM_EINTERNAL = -20,    /* a bug: please report it */
  PM_ERR_LAST = -20
};

/* ---------------------------------------------------------------------
 * Samples
 * ------------------------------------------------------------------- */

/* How a sample combines with what is stored for its series and ts. A
 * series (metric + labels) has one kind for life. */
typedef enum pm_kind {
  PM_SET = 1, /* the value at ts: a re-send overwrites (gauges, and
                 per-bucket counts that a poll recomputes) */
  PM_ADD = 2  /* an increment at ts: events counted one by one */
} pm_kind_t;

typedef struct pm_label {
  const char *key;   /* [a-z][a-z0-9_]*, at most 64 bytes */
  const char *value; /* printable UTF-8, at most 256 bytes */
} pm_label_t;

/*
 * One sample. Limits (checked at emit):
 *   metric    [a-z][a-z0-9_]*(\.[a-z0-9_]+)*, at most 128 bytes, and
 *             declared: canonical, or in the plugin's metrics table
 *   labels    at most 16 (the host adds the collector's configured labels
 *             and the reserved label `collector`; a plugin may not set
 *             `collector`), at most 2 KiB together
 *   ts_us     microseconds since 1970-01-01 UTC; for a bucketed count the
 *             bucket's start. 0 means "now". Not older than the
 *             database's max_sample_age, not more than a day ahead.
 *   value     finite
 * The host copies everything it needs during emit; the caller keeps
 * ownership of the array and all strings.
 */
typedef struct pm_sample {
  const char *metric;
  const pm_label_t *labels;
  size_t n_labels;
  int64_t ts_us;
  double value;
  pm_kind_t kind;
} pm_sample_t;

/* ---------------------------------------------------------------------
 * Declarations: metrics and settings
 * ------------------------------------------------------------------- */

typedef enum pm_metric_type {
  PM_GAUGE = 1, /* a level: sum it across series, never over time */
  PM_COUNT = 2  /* events per bucket: sum over time is meaningful */
} pm_metric_type_t;

/* A metric a plugin emits beyond the canonical ones (which the daemon
 * declares itself). Listed in portalmetrics.metrics. Arrays of these end
 * with an entry whose name is NULL. */
typedef struct pm_metric_decl {
  const char *name; /* e.g. "acme.queue_depth" */
  pm_metric_type_t type;
  const char *unit;        /* e.g. "patients", "messages", "seconds", "1" */
  const char *description; /* one line */
} pm_metric_decl_t;

typedef enum pm_setting_type {
  PM_T_STRING = 1,
  PM_T_INT = 2,   /* 64-bit signed */
  PM_T_FLOAT = 3, /* double; an integer in the config is accepted */
  PM_T_BOOL = 4,
  PM_T_DURATION = 5, /* "500ms", "15m", "2d": read as microseconds */
  PM_T_SIZE = 6,     /* "64MiB", "10kB", "512": read as bytes */
  PM_T_LIST = 7,     /* ( ... ) or [ ... ]; children[0] describes each
                        element (its key is ignored) */
  PM_T_GROUP = 8     /* { ... }; children lists its members */
} pm_setting_type_t;

/*
 * One setting a plugin accepts in a collector's `settings` block. Arrays
 * end with an entry whose key is NULL. The daemon validates every
 * instance's settings against this table before create (an unknown key, a
 * wrong type, a missing required key is a config error naming file, line
 * and setting) and fills in defaults, so a plugin reads every declared
 * scalar that has a default without checking for absence.
 */
typedef struct pm_setting_decl {
  const char *key;
  pm_setting_type_t type;
  const char *default_value; /* text, parsed as the type (NULL: none) */
  int required;              /* nonzero: must be present */
  const char *doc;           /* one line, shown by --plugin-info */
  const struct pm_setting_decl *children; /* LIST and GROUP only */
} pm_setting_decl_t;

/* ---------------------------------------------------------------------
 * Handles
 * ------------------------------------------------------------------- */

/* One configured collector: an instance of a plugin. Owned by the host;
 * valid from create until destroy returns. */
typedef struct pm_instance pm_instance_t;

/* A node of an instance's validated settings: a scalar, a list or a
 * group. Owned by the host; valid until the instance's destroy returns. */
typedef struct pm_setting pm_setting_t;

/* Called once, on the loop thread, when an emit's samples are durable
 * (status 0: written and fsynced to the daemon's local spool, so they
 * reach PostgreSQL exactly once whatever happens next) or can never be
 * (status < 0: PM_EIO when the disk refused them, PM_ESTOPPED at
 * shutdown). Never called from inside emit, and never when emit returned
 * an error. Completions fire in emit order. */
typedef void (*pm_durable_cb)(pm_instance_t *inst, void *arg, int status);

/*
 * Optional arguments of emit. Zero-initialise, then set `size`.
 *
 * Durable completion. on_durable fires once the samples are durable (see
 * pm_durable_cb). A listener acknowledges its upstream only then: an HL7
 * listener sends its ACK from the completion, so a message the daemon
 * could lose is never acknowledged, and a sender whose ACK was lost sends
 * the message again.
 *
 * Idempotency key. The retransmission is recognised by its key (for HL7:
 * sending application, facility and control id). An emit whose key the
 * daemon saw within spool.dedup_window (default 7 days; across restarts:
 * the key index is written in the same group commit as the samples) is a
 * duplicate: emit returns 0, nothing is counted again, and its completion
 * fires once the original is durable, so the sender gets its ACK either
 * way. Keys are scoped to the collector and stored only as keyed hashes
 * (HMAC-SHA-256 with a per-spool secret), never raw: a key may hold
 * identifiers of a message, never of a patient. A refused emit (an error,
 * PM_EBUSY) does not use up its key: the retry is taken.
 *
 * Example (a listener, on the loop thread):
 *
 *     static void on_durable(pm_instance_t *inst, void *arg, int status) {
 *       struct msg *m = arg;
 *       send_ack(m->conn, m->control_id, status == 0 ? "AA" : "AR");
 *       msg_free(m);
 *     }
 *
 *     char key[200];
 *     int len = snprintf(key, sizeof(key), "%s|%s|%s", m->sending_app,
 *                        m->sending_facility, m->control_id);
 *     pm_emit_opts_t o = {.size = sizeof(o), .on_durable = on_durable,
 *                         .arg = m, .idem_key = key,
 *                         .idem_key_len = (size_t)len};
 *     int rc = host->emit(inst, samples, n, &o);
 *     if (rc == PM_EBUSY)
 *       close_without_ack(m->conn);   // the sender retries later
 *     else if (rc != 0)
 *       send_ack_and_free(m, "AE");   // on_durable will not fire
 */
typedef struct pm_emit_opts {
  size_t size; /* sizeof(pm_emit_opts_t) as the plugin built it */
  /* Completion: fires when the samples are durable (see above). */
  pm_durable_cb on_durable;
  void *arg;
  /* Idempotency key (see above). Copied during emit. NULL: no key. */
  const void *idem_key;
  size_t idem_key_len; /* 1 to 256 */
} pm_emit_opts_t;

#define PM_LOG_ERROR 3
#define PM_LOG_WARNING 4
#define PM_LOG_NOTICE 5
#define PM_LOG_INFO 6
#define PM_LOG_DEBUG 7

/* ---------------------------------------------------------------------
 * The host table: what the daemon offers a plugin
 * ------------------------------------------------------------------- */

typedef struct pm_host {
  /* sizeof(pm_host_t) as the daemon was built: a function exists iff
   * PM_HOST_HAS(host, name). */
  size_t size;
  uint32_t abi_major;
  uint32_t abi_minor;

  /* Emit n samples, all or nothing: if any sample is invalid nothing is
   * taken, the error says why, and the daemon counts and logs it. n may
   * be 0 (e.g. a message that counts nothing still wants its completion,
   * to acknowledge it). Any
   * thread. Returns 0, a validation error, PM_EBUSY (the daemon cannot
   * take samples now: a listener should refuse its upstream and let it
   * retry), or PM_ESTOPPED (a poll run past its deadline, or the instance
   * is stopping: the samples are dropped and counted). opts may be NULL. */
  int (*emit)(pm_instance_t *inst, const pm_sample_t *samples, size_t n,
              const pm_emit_opts_t *opts);

  /* Log one line, tagged with the collector's name. Never log patient
   * data, URLs with patient parameters, message bodies or secrets. Any
   * thread. */
  void (*log)(pm_instance_t *inst, int level, const char *fmt, ...)
      PM_PRINTF(3, 4);

  /* Wall-clock time, microseconds since 1970-01-01 UTC. Any thread. */
  int64_t (*now_us)(pm_instance_t *inst);

  /* The IANA time zone of the site (daemon.timezone), for day buckets.
   * Owned by the host, valid until destroy. Any thread. */
  const char *(*timezone)(pm_instance_t *inst);

  /* A directory of this instance's own (created on first call), under the
   * daemon's state directory, for cursors and caches; never for patient
   * data. Owned by the host, valid until destroy. NULL when the daemon
   * runs without state (--once). Any thread. */
  const char *(*state_dir)(pm_instance_t *inst);

  /* The daemon's loop, for listener plugins (NULL for poll plugins).
   * Use it only on the loop thread. */
  uv_loop_t *(*loop)(pm_instance_t *inst);

  /* Nonzero once a poll run's deadline has passed or the instance is
   * stopping: a long collect should check it between requests and
   * return PM_ETIMEOUT. Any thread. */
  int (*should_stop)(pm_instance_t *inst);

  /* A listener's stop is complete: every handle it owned is closed. Call
   * exactly once per stop, on the loop thread, possibly from inside stop
   * itself. The host calls destroy only after it. */
  void (*stopped)(pm_instance_t *inst);

  /* One line explaining an error code. Static string. Any thread. */
  const char *(*strerror)(int code);

  /* Settings. All returned pointers are owned by the host and valid until
   * destroy. Any thread.
   *   settings(inst)           the root group
   *   setting_get(group, key)  a member, or NULL if absent (a declared
   *                            setting with a default is never absent)
   *   setting_count(node)      elements of a list, members of a group,
   *                            0 for a scalar or NULL
   *   setting_at(node, i)      the i-th element/member, NULL past the end
   *   setting_key(node)        the member's key (NULL for list elements)
   * The readers return PM_ENOTFOUND for a NULL node and PM_ETYPE for a
   * node of another type; *out is owned by the host. */
  const pm_setting_t *(*settings)(pm_instance_t *inst);
  const pm_setting_t *(*setting_get)(const pm_setting_t *group,
                                     const char *key);
  size_t (*setting_count)(const pm_setting_t *node);
  const pm_setting_t *(*setting_at)(const pm_setting_t *node, size_t i);
  const char *(*setting_key)(const pm_setting_t *node);
  int (*setting_string)(const pm_setting_t *node, const char **out);
  int (*setting_int)(const pm_setting_t *node, int64_t *out);
  int (*setting_float)(const pm_setting_t *node, double *out);
  int (*setting_bool)(const pm_setting_t *node, int *out);
  int (*setting_duration)(const pm_setting_t *node, int64_t *out_us);
  int (*setting_size)(const pm_setting_t *node, uint64_t *out_bytes);

  /* New functions are appended here. */
} pm_host_t;

#define PM_HOST_HAS(host, fn)                                                  \
  ((host)->size >= offsetof(pm_host_t, fn) + sizeof((host)->fn) &&             \
   (host)->fn != NULL)

/* ---------------------------------------------------------------------
 * The descriptor: what a plugin offers the daemon
 * ------------------------------------------------------------------- */

typedef enum pm_plugin_mode {
  PM_POLL = 1,    /* the daemon calls collect every interval */
  PM_LISTENER = 2 /* the plugin runs on the loop between start and stop */
} pm_plugin_mode_t;

typedef struct pm_plugin {
  uint32_t abi_major; /* PM_ABI_MAJOR */
  uint32_t abi_minor; /* PM_ABI_MINOR */
  size_t size;        /* sizeof(pm_plugin_t) */

  const char *name;        /* must equal the file name without ".so" */
  const char *version;     /* the plugin's own version, free form */
  const char *description; /* one line */
  pm_plugin_mode_t mode;

  const pm_metric_decl_t *metrics;   /* NULL-name terminated, may be NULL */
  const pm_setting_decl_t *settings; /* NULL-key terminated, may be NULL */

  /* Make an instance from its validated settings (read them through the
   * host). Loop thread. On success store the plugin's state in *self
   * (owned by the plugin until destroy) and return 0; on failure log why
   * with host->log and return an error: the collector is not started.
   * `host` is valid until the daemon exits. `--check-config` calls
   * create and then destroy at once, maybe beside a running daemon:
   * check settings and files here, but open no socket, make no
   * connection, start no thread and write no state (start and collect
   * do that). */
  int (*create)(pm_instance_t *inst, const pm_host_t *host, void **self);

  /* PM_POLL: collect once, emitting samples with host->emit. Worker
   * thread; may block, but should return by its deadline (see
   * should_stop). Never runs twice at once for one instance; different
   * instances run concurrently. Return 0 or an error: an error is
   * counted by reason and the next run backs off. */
  int (*collect)(void *self, pm_instance_t *inst);

  /* PM_LISTENER: open sockets and timers on host->loop(inst). Loop
   * thread. An error means nothing was left open. */
  int (*start)(void *self, pm_instance_t *inst);
  /* PM_LISTENER: close everything, then call host->stopped(inst) once.
   * Loop thread. */
  void (*stop)(void *self, pm_instance_t *inst);

  /* Free the instance's state. Loop thread. Called after create
   * succeeded, once no collect runs and (listeners) after stopped. */
  void (*destroy)(void *self, pm_instance_t *inst);
} pm_plugin_t;

typedef const pm_plugin_t *(*pm_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* PORTALMETRICS_PLUGIN_H */
