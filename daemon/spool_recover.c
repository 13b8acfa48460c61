/* Open-time recovery: spool.meta, then every segment in order, record by
 * record; torn tails truncated, bad ranges quarantined and skipped, bad
 * headers quarantined whole. Runs before the loop and the flusher, so it
 * takes no locks. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "log.h"
#include "spool_int.h"

#define META "spool.meta"
#define META_TMP "spool.meta.tmp"
#define QDIR "quarantine"

static void hex(char *out, const unsigned char *p, size_t n) {
  static const char d[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = d[p[i] >> 4];
    out[2 * i + 1] = d[p[i] & 15];
  }
  out[2 * n] = 0;
}

static int unhex(unsigned char *out, const char *s, size_t n) {
  for (size_t i = 0; i < 2 * n; i++) {
    int v;
    char c = s[i];
    if (c >= '0' && c <= '9')
      v = c - '0';
    else if (c >= 'a' && c <= 'f')
      v = c - 'a' + 10;
    else
      return -1;
    if (i % 2 == 0)
      out[i / 2] = (unsigned char)(v << 4);
    else
      out[i / 2] |= (unsigned char)v;
  }
  return s[2 * n] == '\n' ? 0 : -1;
}

static int write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

int pm_spool__fsync_dir(int fd) {
  return fsync(fd) == 0 ? 0 : -1;
}

int pm_spool__write_meta(pm_spool_t *s, uint64_t next_seq) {
  char text[512], sec[65];
  int n, fd, rc = -1;

  hex(sec, s->secret, sizeof(s->secret));
  n = snprintf(text, sizeof(text),
               "portalmetrics-spool 1\nid %s\nsecret %s\nnext_seq %" PRIu64
               "\n",
               s->id, sec, next_seq);
  n += snprintf(text + n, sizeof(text) - (size_t)n, "crc %08x\n",
                (unsigned)pm_crc32c(0, text, (size_t)n));
  fd = openat(s->dirfd, META_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
              0600);
  if (fd < 0)
    return -1;
  if (write_all(fd, text, (size_t)n) == 0 && fsync(fd) == 0)
    rc = 0;
  close(fd);
  if (rc == 0 && renameat(s->dirfd, META_TMP, s->dirfd, META) != 0)
    rc = -1;
  if (rc == 0)
    rc = pm_spool__fsync_dir(s->dirfd);
  return rc;
}

/* 0 and id, secret and *floor from spool.meta; -1 if absent or bad. */
static int read_meta(pm_spool_t *s, uint64_t *floor) {
  char text[1024], *p, *crcline;
  ssize_t n;
  unsigned crc;
  int fd = openat(s->dirfd, META, O_RDONLY | O_CLOEXEC);

  if (fd < 0)
    return -1;
  n = read(fd, text, sizeof(text) - 1);
  close(fd);
  if (n <= 0)
    return -1;
  text[n] = 0;
  if (!(crcline = strstr(text, "crc ")) ||
      sscanf(crcline, "crc %8x\n", &crc) != 1 ||
      crc != pm_crc32c(0, text, (size_t)(crcline - text)))
    return -1;
  if (strncmp(text, "portalmetrics-spool 1\nid ", 25) != 0)
    return -1;
  p = text + 25;
  if (unhex(s->idraw, p, 16) != 0)
    return -1;
  p += 33;
  if (strncmp(p, "secret ", 7) != 0 || unhex(s->secret, p + 7, 32) != 0)
    return -1;
  p += 7 + 65;
  if (sscanf(p, "next_seq %" SCNu64 "\n", floor) != 1)
    return -1;
  return 0;
}

typedef struct segname {
  uint64_t seq;
  char name[32];
} segname_t;

static int segname_cmp(const void *a, const void *b) {
  const segname_t *x = a, *y = b;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The segment files, sorted by first seq; -1 if the folder cannot be
 * listed. */
static int list_segments(pm_spool_t *s, segname_t **out, size_t *nout) {
  DIR *d = opendir(s->dir);
  struct dirent *e;
  segname_t *v = NULL;
  size_t n = 0, cap = 0;

  if (!d)
    return -1;
  while ((e = readdir(d)) != NULL) {
    uint64_t seq;
    if (!pm_seg_name_parse(e->d_name, &seq))
      continue;
    if (n == cap) {
      size_t c = cap ? cap * 2 : 16;
      segname_t *nv = realloc(v, c * sizeof(*v));
      if (!nv) {
        free(v);
        closedir(d);
        return -1;
      }
      v = nv;
      cap = c;
    }
    v[n].seq = seq;
    memcpy(v[n].name, e->d_name, 29); /* parse checked: 28 chars */
    n++;
  }
  closedir(d);
  if (n)
    qsort(v, n, sizeof(*v), segname_cmp);
  *out = v;
  *nout = n;
  return 0;
}

static int open_qdir(pm_spool_t *s) {
  if (mkdirat(s->dirfd, QDIR, 0750) == 0)
    pm_spool__fsync_dir(s->dirfd);
  return openat(s->dirfd, QDIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* Copy bytes [a, b) of a segment to quarantine/<name>.<a>-<b>. */
static void quarantine_range(pm_spool_t *s, int fd, const char *name,
                             uint64_t a, uint64_t b) {
  char qname[96];
  unsigned char buf[65536];
  int qfd = open_qdir(s), out;
  uint64_t off = a;

  s->st.quarantined++;
  s->st.quarantined_bytes += b - a;
  snprintf(qname, sizeof(qname), "%s.%" PRIu64 "-%" PRIu64, name, a, b);
  if (qfd < 0) {
    pm_error("spool: %s: bytes %" PRIu64 "-%" PRIu64
             " are damaged and skipped, but cannot be copied to %s/%s: %s",
             name, a, b, s->dir, QDIR, strerror(errno));
    return;
  }
  out = openat(qfd, qname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (out < 0 && errno == EEXIST) {
    pm_warn("spool: %s: bytes %" PRIu64 "-%" PRIu64
            " are damaged and skipped (already in %s/%s/%s)",
            name, a, b, s->dir, QDIR, qname);
    close(qfd);
    return;
  }
  while (out >= 0 && off < b) {
    size_t want = b - off < sizeof(buf) ? (size_t)(b - off) : sizeof(buf);
    ssize_t r = pread(fd, buf, want, (off_t)off);
    if (r <= 0 || write_all(out, buf, (size_t)r) != 0)
      break;
    off += (uint64_t)r;
  }
  if (out < 0 || off < b || fsync(out) != 0 || pm_spool__fsync_dir(qfd) != 0)
    pm_error("spool: %s: bytes %" PRIu64 "-%" PRIu64
             " are damaged and skipped; copying them to %s/%s/%s failed: %s",
             name, a, b, s->dir, QDIR, qname, strerror(errno));
  else
    pm_warn("spool: %s: bytes %" PRIu64 "-%" PRIu64
            " are damaged: skipped, copied to %s/%s/%s",
            name, a, b, s->dir, QDIR, qname);
  if (out >= 0)
    close(out);
  close(qfd);
}

/* Move a whole segment to quarantine/. */
static void quarantine_file(pm_spool_t *s, const char *name, uint64_t size,
                            const char *why) {
  char qname[64];
  int qfd = open_qdir(s), rc = -1;

  s->st.quarantined++;
  s->st.quarantined_bytes += size;
  snprintf(qname, sizeof(qname), "%s", name);
  for (int i = 1; qfd >= 0 && i < 1000; i++) {
    struct stat st;
    if (fstatat(qfd, qname, &st, 0) != 0 && errno == ENOENT) {
      rc = renameat(s->dirfd, name, qfd, qname);
      break;
    }
    snprintf(qname, sizeof(qname), "%s.%d", name, i);
  }
  if (rc == 0 && pm_spool__fsync_dir(qfd) == 0 &&
      pm_spool__fsync_dir(s->dirfd) == 0)
    pm_warn("spool: %s: %s: moved to %s/%s/%s (%" PRIu64 " bytes)", name, why,
            s->dir, QDIR, qname, size);
  else
    pm_error("spool: %s: %s, and it cannot be moved to %s/%s: %s", name, why,
             s->dir, QDIR, strerror(errno));
  if (qfd >= 0)
    close(qfd);
}

/* Whether a record that parsed may stand where it is: samples' seqs must
 * increase across the whole spool. */
static int acceptable(const pm_rec_view_t *v, uint64_t max_seq,
                      uint64_t seg_first) {
  if (v->type != PM_R_SAMPLES)
    return 1;
  return v->u.samples.first_seq > max_seq &&
         v->u.samples.first_seq >= seg_first;
}

/* The next offset after `from` where a valid record starts, or UINT64_MAX. */
static uint64_t resync(pm_rbuf_t *rb, uint64_t from, uint64_t end,
                       uint64_t max_seq, uint64_t seg_first) {
  pm_rec_view_t v;
  for (uint64_t q = from; q + PM_REC_HDR <= end; q++) {
    const unsigned char *h = pm_rbuf_get(rb, q, PM_REC_HDR);
    if (!h)
      break;
    if (h[8] < PM_R_SERIES || h[8] > PM_R_KEY)
      continue;
    if (pm_rec_parse(rb, q, end, &v) == PM_PARSE_OK &&
        acceptable(&v, max_seq, seg_first))
      return q;
  }
  return UINT64_MAX;
}

static void truncate_at(int fd, const char *name, uint64_t off) {
  if (ftruncate(fd, (off_t)off) != 0 || fsync(fd) != 0)
    pm_error("spool: %s: cannot truncate to %" PRIu64 " bytes: %s", name, off,
             strerror(errno));
}

/* A segment whose header is bad: the highest seq its body still holds, so
 * seqs are never reused. */
static uint64_t body_max_seq(pm_rbuf_t *rb, uint64_t end) {
  pm_rec_view_t v;
  uint64_t off = PM_SEG_HDR, m = 0;
  while (off < end) {
    if (pm_rec_parse(rb, off, end, &v) == PM_PARSE_OK) {
      if (v.type == PM_R_SAMPLES) {
        uint64_t last = v.u.samples.first_seq + v.u.samples.n - 1;
        m = last > m ? last : m;
      }
      off += v.size;
    } else if ((off = resync(rb, off + 1, end, 0, 0)) == UINT64_MAX) {
      break;
    }
  }
  return m;
}

static int add_range(pm_spool_seg_t *g, uint64_t a, uint64_t b) {
  pm_spool_range_t *r = realloc(g->bad, (g->nbad + 1) * sizeof(*r));
  if (!r)
    return -1;
  g->bad = r;
  r[g->nbad++] = (pm_spool_range_t){a, b};
  return 0;
}

static void apply(pm_spool_t *s, pm_spool_seg_t *g, const pm_rec_view_t *v,
                  uint64_t *max_seq, int64_t now) {
  switch (v->type) {
  case PM_R_SERIES: {
    const pm_series_view_t *sv = &v->u.series;
    pm_spool__intern(s, sv->id, sv->kind, sv->metric, sv->metric_len,
                     sv->labels, sv->labels_len);
    break;
  }
  case PM_R_SAMPLES: {
    const pm_samples_view_t *sv = &v->u.samples;
    uint64_t last = sv->first_seq + sv->n - 1;
    *max_seq = last;
    g->last_seq = last;
    g->nrecs += sv->n;
    s->st.recovered += sv->n;
    pm_spool__ckpt(s, sv->first_seq, sv->append_us);
    break;
  }
  case PM_R_KEY: {
    const pm_key_view_t *kv = &v->u.key;
    pm_keyent_t *e;
    if (now - kv->seen_us > s->keys.window_us)
      break;
    if ((e = pm_keyidx_slot(&s->keys, kv->h, now)) != NULL) {
      e->seen_us = kv->seen_us;
      e->seq = kv->seq;
      e->gen = g->gen;
    }
    break;
  }
  }
}

/* Scan one segment. */
static void scan_segment(pm_spool_t *s, const segname_t *sn, int is_last,
                         uint64_t *max_seq, uint64_t *floor, int64_t now) {
  pm_rbuf_t rb = {0};
  pm_seg_hdr_t h;
  pm_rec_view_t v;
  const unsigned char *p;
  pm_spool_seg_t *g;
  struct stat st;
  uint64_t off, end;
  int fd = openat(s->dirfd, sn->name, O_RDWR | O_CLOEXEC);

  if (fd < 0 || fstat(fd, &st) != 0) {
    pm_error("spool: %s/%s: cannot open: %s (left alone)", s->dir, sn->name,
             strerror(errno));
    if (fd >= 0)
      close(fd);
    return;
  }
  end = (uint64_t)st.st_size;
  pm_rbuf_reset(&rb, fd);
  p = pm_rbuf_get(&rb, 0, PM_SEG_HDR);
  if (is_last && end < PM_SEG_HDR) {
    /* A crash while creating it: nothing was ever acknowledged in it. */
    pm_info("spool: %s: an incomplete new segment (%" PRIu64 " bytes): removed",
            sn->name, end);
    s->st.truncated_bytes += end;
    if (unlinkat(s->dirfd, sn->name, 0) == 0)
      pm_spool__fsync_dir(s->dirfd);
    goto out;
  }
  if (!p || pm_seg_hdr_decode(p, PM_SEG_HDR, &h) != 0 ||
      memcmp(h.id, s->idraw, 16) != 0 || h.first_seq != sn->seq) {
    uint64_t m = body_max_seq(&rb, end);
    if (m >= *floor)
      *floor = m + 1;
    quarantine_file(s, sn->name, end,
                    !p || pm_seg_hdr_decode(p, PM_SEG_HDR, &h) != 0
                        ? "bad header"
                    : memcmp(h.id, s->idraw, 16) != 0
                        ? "belongs to another spool"
                        : "header does not match the file name");
    goto out;
  }
  if (!(g = calloc(1, sizeof(*g)))) {
    pm_error("spool: out of memory recovering %s", sn->name);
    goto out;
  }
  snprintf(g->name, sizeof(g->name), "%s", sn->name);
  g->first_seq = h.first_seq;
  g->last_seq = h.first_seq - 1;
  g->gen = ++s->next_gen;
  g->wfd = g->rfd = -1;
  if (h.first_seq >= *floor)
    *floor = h.first_seq + 1;

  off = PM_SEG_HDR;
  while (off < end) {
    uint64_t q;
    if (pm_rec_parse(&rb, off, end, &v) == PM_PARSE_OK &&
        acceptable(&v, *max_seq, g->first_seq)) {
      apply(s, g, &v, max_seq, now);
      off += v.size;
      continue;
    }
    q = resync(&rb, off + 1, end, *max_seq, g->first_seq);
    if (q != UINT64_MAX) {
      quarantine_range(s, fd, sn->name, off, q);
      add_range(g, off, q);
      off = q;
      continue;
    }
    if (is_last) {
      pm_warn("spool: %s: torn tail of %" PRIu64 " bytes at %" PRIu64
              ": truncated",
              sn->name, end - off, off);
      s->st.truncated_bytes += end - off;
    } else {
      quarantine_range(s, fd, sn->name, off, end);
    }
    truncate_at(fd, sn->name, off);
    end = off;
  }
  g->end = end;
  if (pm_spool__add_seg(s, g) != 0) {
    free(g->bad);
    free(g);
  }
out:
  pm_rbuf_free(&rb);
  close(fd);
}

int pm_spool__recover(pm_spool_t *s, char *err, size_t errlen) {
  segname_t *names = NULL;
  size_t n = 0;
  uint64_t floor = 1, max_seq = 0;
  int64_t now = pm_spool__now_us();
  int have_meta = read_meta(s, &floor) == 0;

  unlinkat(s->dirfd, META_TMP, 0);
  if (list_segments(s, &names, &n) != 0) {
    snprintf(err, errlen, "spool: cannot list %s: %s", s->dir, strerror(errno));
    return PM_EIO;
  }
  if (!have_meta) {
    /* Keep the identity the segments carry, or the writer would ship them
     * again under a new one. */
    int found = 0;
    for (size_t i = n; i-- > 0 && !found;) {
      unsigned char b[PM_SEG_HDR];
      pm_seg_hdr_t h;
      int fd = openat(s->dirfd, names[i].name, O_RDONLY | O_CLOEXEC);
      if (fd < 0)
        continue;
      if (pread(fd, b, sizeof(b), 0) == (ssize_t)sizeof(b) &&
          pm_seg_hdr_decode(b, sizeof(b), &h) == 0) {
        memcpy(s->idraw, h.id, 16);
        found = 1;
      }
      close(fd);
    }
    if ((!found && RAND_bytes(s->idraw, sizeof(s->idraw)) != 1) ||
        RAND_bytes(s->secret, sizeof(s->secret)) != 1) {
      free(names);
      snprintf(err, errlen, "spool: no random bytes for the spool id");
      return PM_EINTERNAL;
    }
    floor = 1;
    if (n > 0)
      pm_warn("spool: %s/%s is missing or damaged: recreated%s; idempotency "
              "keys recorded so far will not be recognised",
              s->dir, META, found ? " with the segments' spool id" : "");
  }
  hex(s->id, s->idraw, 16);

  for (size_t i = 0; i < n; i++)
    scan_segment(s, &names[i], i + 1 == n, &max_seq, &floor, now);
  free(names);

  s->durable_seq = max_seq;
  s->next_seq = max_seq + 1 > floor ? max_seq + 1 : floor;
  if (pm_spool__write_meta(s, s->next_seq) != 0) {
    snprintf(err, errlen, "spool: cannot write %s/%s: %s", s->dir, META,
             strerror(errno));
    return PM_EIO;
  }
  if (s->nsegs || !have_meta)
    pm_info("spool %s in %s: %zu segment(s), %" PRIu64
            " record(s) recovered (seqs up to %" PRIu64 "), %" PRIu64
            " torn tail byte(s) truncated, %" PRIu64
            " range(s) quarantined (%" PRIu64 " bytes)",
            s->id, s->dir, s->nsegs, s->st.recovered, max_seq,
            s->st.truncated_bytes, s->st.quarantined, s->st.quarantined_bytes);
  return 0;
}
