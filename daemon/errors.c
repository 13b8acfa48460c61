/* Every error code explained in one place (as curl's curl_easy_strerror). */
#include "errors.h"

#include <portalmetrics/plugin.h>

static const struct {
  const char *name;
  const char *text;
} errs[] = {
    [0] = {"ok", "success"},
    [-PM_EINVAL] = {"invalid", "invalid argument"},
    [-PM_ENOMEM] = {"nomem", "out of memory"},
    [-PM_EMETRIC] = {"metric", "metric name invalid or not declared"},
    [-PM_ELABEL] = {"label",
                    "label invalid, reserved, repeated, or too many/long"},
    [-PM_ETS] = {"ts", "timestamp too old or too far in the future"},
    [-PM_EVALUE] = {"value", "value is not a finite number"},
    [-PM_EKIND] = {"kind", "series already has the other kind (set/add)"},
    [-PM_ESERIES] = {"max_series", "the collector's max_series is reached"},
    [-PM_EBUSY] = {"busy", "the daemon cannot take samples now"},
    [-PM_ESTOPPED] = {"stopped", "stopping, or the run passed its deadline"},
    [-PM_ENOTFOUND] = {"notfound", "no such setting"},
    [-PM_ETYPE] = {"type", "the setting has another type"},
    [-PM_ETIMEOUT] = {"timeout", "timed out"},
    [-PM_EIO] = {"io", "input/output error"},
    [-PM_EPEER] = {"peer", "the peer answered something malformed or an error"},
    [-PM_EUNREACHABLE] = {"unreachable", "the peer could not be reached"},
    [-PM_EAUTH] = {"auth", "the peer refused the credentials"},
    [-PM_ECONFIG] = {"config", "a setting's value cannot be used"},
    [-PM_EABI] = {"abi", "plugin ABI mismatch"},
    [-PM_EINTERNAL] = {"internal", "internal error (a bug: please report it)"},
};

const char *pm_strerror(int code) {
  if (code > 0 || code < PM_ERR_LAST)
    return "unknown error";
  return errs[-code].text;
}

const char *pm_errname(int code) {
  if (code > 0 || code < PM_ERR_LAST)
    return "unknown";
  return errs[-code].name;
}
