/* The spool at run time: appends into a pending group under one mutex,
 * the flusher thread that writes and fsyncs each group, completions
 * through one uv_async_t, reads with a cursor, acks that delete whole
 * segments (carrying their keys forward first). Recovery is in
 * spool_recover.c, the format in spool_format.c. */
#include "spool.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "keyhash.h"
#include "spool_int.h"

#define DEF_SEGMENT (64ull << 20)
#define DEF_DELAY_US 2000
#define DEF_COMMIT_BYTES (1u << 20)
#define DEF_WINDOW_US (7ll * 86400 * 1000000)
#define MAX_WINDOW_US (100ll * 365 * 86400 * 1000000)
#define KEY_REC (PM_REC_HDR + PM_KEY_BYTES)

int64_t pm_spool__now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Room for `need` elements of `size` bytes in *p (capacity *cap). */
static int grow(void *pp, size_t *cap, size_t need, size_t size) {
  void **p = pp;
  size_t c = *cap ? *cap : 16;
  void *np;
  if (need <= *cap)
    return 0;
  while (c < need)
    c *= 2;
  if (!(np = realloc(*p, c * size)))
    return -1;
  *p = np;
  *cap = c;
  return 0;
}

/* ------------------------------------------------------------------ */
/* the series table */

static const pm_series_t *lookup_locked(pm_spool_t *s, int64_t id) {
  int64_t i;
  return pm_idmap_get(&s->ser_idx, id, &i) ? s->ser[i] : NULL;
}

static const pm_series_t *intern_locked(pm_spool_t *s, int64_t id, int kind,
                                        const char *metric, size_t mlen,
                                        const char *labels, size_t llen) {
  const pm_series_t *found = lookup_locked(s, id);
  pm_series_t *e;
  if (found)
    return found;
  if (grow(&s->ser, &s->capser, s->nser + 1, sizeof(*s->ser)) != 0 ||
      !(e = calloc(1, sizeof(*e))))
    return NULL;
  e->id = id;
  e->kind = (pm_kind_t)kind;
  e->metric = strndup(metric, mlen);
  e->labels_json = strndup(labels, llen);
  if (!e->metric || !e->labels_json ||
      pm_idmap_put(&s->ser_idx, id, (int64_t)s->nser) != 0) {
    free(e->metric);
    free(e->labels_json);
    free(e);
    return NULL;
  }
  s->ser[s->nser++] = e;
  return e;
}

const pm_series_t *pm_spool__intern(pm_spool_t *s, int64_t id, int kind,
                                    const char *metric, size_t mlen,
                                    const char *labels, size_t llen) {
  const pm_series_t *e;
  pthread_mutex_lock(&s->smu);
  e = intern_locked(s, id, kind, metric, mlen, labels, llen);
  pthread_mutex_unlock(&s->smu);
  return e;
}

const pm_series_t *pm_spool__series(pm_spool_t *s, int64_t id) {
  const pm_series_t *e;
  pthread_mutex_lock(&s->smu);
  e = lookup_locked(s, id);
  pthread_mutex_unlock(&s->smu);
  return e;
}

/* ------------------------------------------------------------------ */
/* segments, checkpoints, groups */

int pm_spool__add_seg(pm_spool_t *s, pm_spool_seg_t *g) {
  if (grow(&s->segs, &s->capsegs, s->nsegs + 1, sizeof(*s->segs)) != 0)
    return -1;
  s->segs[s->nsegs++] = g;
  s->disk_bytes += g->end;
  return 0;
}

static void seg_free(pm_spool_seg_t *g) {
  if (g->wfd >= 0)
    close(g->wfd);
  if (g->rfd >= 0)
    close(g->rfd);
  free(g->bad);
  free(g);
}

/* Called locked (or before the flusher runs). */
void pm_spool__ckpt(pm_spool_t *s, uint64_t seq, int64_t us) {
  if (s->nckpt && us - s->ckpt[s->nckpt - 1].us < s->ckpt_step_us)
    return;
  if (s->nckpt == PM_SPOOL_CKPT_MAX) {
    /* Full: halve the resolution rather than grow. */
    for (size_t i = 0; i < PM_SPOOL_CKPT_MAX / 2; i++)
      s->ckpt[i] = s->ckpt[2 * i];
    s->nckpt = PM_SPOOL_CKPT_MAX / 2;
    s->ckpt_step_us *= 2;
  }
  s->ckpt[s->nckpt++] = (pm_spool_ckpt_t){seq, us};
}

static int group_empty(const pm_spool_group_t *g) {
  return g->data.len == 0 && g->ncomps == 0;
}

static void group_reset(pm_spool_group_t *g) {
  pm_buf_reset(&g->data);
  g->nseries = 0;
  pm_idset_clear(&g->seen);
  g->ncomps = 0;
  g->nkeys = 0;
  g->first_seq = g->last_seq = 0;
  g->nrecs = 0;
  g->start_us = g->start_wall_us = 0;
}

static void group_free(pm_spool_group_t *g) {
  pm_buf_free(&g->data);
  free(g->series);
  pm_idset_free(&g->seen);
  free(g->comps);
  free(g->keys);
}

/* Note the group became non-empty (locked): wake the flusher. */
static void group_touch(pm_spool_t *s) {
  if (s->pend.start_us == 0) {
    s->pend.start_us = mono_us();
    s->pend.start_wall_us = pm_spool__now_us();
    pthread_cond_signal(&s->cv);
  }
}

static int push_done(pm_spool_t *s, pm_done_cb cb, void *arg, int status) {
  if (grow(&s->done, &s->capdone, s->ndone + 1, sizeof(*s->done)) != 0)
    return -1;
  s->done[s->ndone++] = (pm_spool_done_t){cb, arg, status};
  return 0;
}

static int in_failed(pm_spool_t *s, uint64_t seq) {
  for (size_t i = 0; i < s->nfailed; i++)
    if (seq >= s->failed[i].a && seq <= s->failed[i].b)
      return 1;
  return 0;
}

/* ------------------------------------------------------------------ */
/* append */

static int key_hash(const pm_spool_t *s, const char *scope, const void *key,
                    size_t len, uint64_t out[2]) {
  return pm_keyhash(s->secret, sizeof(s->secret), scope, key, len, out);
}

int pm_spool_append(pm_spool_t *s, pm_rec_t *recs, size_t n, const void *key,
                    size_t keylen, const char *scope, pm_done_cb done,
                    void *arg) {
  pm_spool_group_t *g;
  pm_keyent_t *ke = NULL;
  uint64_t h[2], first;
  size_t need, before;
  int64_t now;
  int rc = 0;

  if (!s || (n && !recs) || (key && (!scope || keylen == 0)) ||
      n > (PM_REC_MAX - PM_SAMPLES_HDR) / PM_SAMPLE_BYTES)
    return PM_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!recs[i].series)
      return PM_EINVAL;
  if (key && (rc = key_hash(s, scope, key, keylen, h)) != 0)
    return rc;
  now = pm_spool__now_us();
  need = (n ? pm_rec_samples_size(n) : 0) + (key ? KEY_REC : 0);

  pthread_mutex_lock(&s->mu);
  g = &s->pend;
  if (s->closing) {
    rc = PM_ESTOPPED;
    goto out;
  }
  if (key) {
    pm_keyent_t *e = pm_keyidx_find(&s->keys, h, now);
    if (e) {
      if (done) {
        if (grow(&g->comps, &g->capcomps, g->ncomps + 1, sizeof(*g->comps))) {
          rc = PM_ENOMEM;
          goto out;
        }
        g->comps[g->ncomps++] = (pm_spool_comp_t){done, arg, e->seq};
        group_touch(s);
      }
      s->st.duplicates++;
      rc = 1;
      goto out;
    }
  }
  if (s->max_size &&
      s->disk_bytes + s->inflight_bytes + g->data.len + need > s->max_size) {
    rc = PM_EBUSY;
    goto out;
  }
  /* Everything that can fail for memory first, so a failure changes
   * nothing. */
  if ((done &&
       grow(&g->comps, &g->capcomps, g->ncomps + 1, sizeof(*g->comps)) != 0) ||
      (key &&
       grow(&g->keys, &g->capkeys, g->nkeys + 1, sizeof(*g->keys)) != 0) ||
      grow(&g->series, &g->capseries, g->nseries + n, sizeof(*g->series)) !=
          0 ||
      pm_buf_reserve(&g->data, need) != 0) {
    g->data.oom = 0;
    rc = PM_ENOMEM;
    goto out;
  }
  if (key && !(ke = pm_keyidx_slot(&s->keys, h, now))) {
    rc = PM_ENOMEM;
    goto out;
  }

  /* The spool's own copy of each series, and the list of those the
   * flusher must describe (once per segment) before these samples. */
  pthread_mutex_lock(&s->smu);
  for (size_t i = 0; i < n; i++) {
    const pm_series_t *r = recs[i].series, *sp;
    int added;
    if (i > 0 && r == recs[i - 1].series)
      continue;
    sp = intern_locked(s, r->id, r->kind, r->metric, strlen(r->metric),
                       r->labels_json, strlen(r->labels_json));
    if (!sp || (added = pm_idset_add(&g->seen, r->id)) < 0) {
      pthread_mutex_unlock(&s->smu);
      rc = PM_ENOMEM;
      goto out;
    }
    if (added)
      g->series[g->nseries++] = sp;
  }
  pthread_mutex_unlock(&s->smu);

  first = s->next_seq;
  for (size_t i = 0; i < n; i++)
    recs[i].seq = s->next_seq++;
  before = g->data.len;
  if (key)
    pm_rec_put_key(&g->data, h, now, n ? first : 0);
  if (n)
    pm_rec_put_samples(&g->data, first, now, recs, n);
  if (g->data.oom) { /* cannot happen: reserved above */
    g->data.len = before;
    g->data.oom = 0;
    s->next_seq = first;
    rc = PM_ENOMEM;
    goto out;
  }
  if (key) { /* ke: nothing touched the index since it was found */
    ke->seen_us = now;
    ke->seq = n ? first : 0;
    ke->gen = 0;
    g->keys[g->nkeys++] = (pm_spool_gkey_t){{h[0], h[1]}, now, ke->seq, 0};
  }
  if (n) {
    if (!g->first_seq)
      g->first_seq = first;
    g->last_seq = s->next_seq - 1;
    g->nrecs += n;
  }
  if (done)
    g->comps[g->ncomps++] = (pm_spool_comp_t){done, arg, 0};
  if (need || done)
    group_touch(s);
  if (g->data.len >= s->commit_bytes && before < s->commit_bytes)
    pthread_cond_signal(&s->cv);
out:
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* ------------------------------------------------------------------ */
/* the flusher */

static int do_fsync(pm_spool_t *s, int fd) {
  int n = atomic_load(&s->fail_syncs);
  while (n > 0)
    if (atomic_compare_exchange_weak(&s->fail_syncs, &n, n - 1)) {
      errno = EIO;
      return -1;
    }
  return fdatasync(fd);
}

/* A new active segment: header, file fsync, directory fsync. */
static int seg_create(pm_spool_t *s, uint64_t first_seq) {
  unsigned char hdr[PM_SEG_HDR];
  pm_seg_hdr_t h;
  pm_spool_seg_t *g = calloc(1, sizeof(*g));
  int fd, rc;

  if (!g)
    return -1;
  pm_seg_name(g->name, first_seq);
  memcpy(h.id, s->idraw, 16);
  h.first_seq = first_seq;
  h.created_us = pm_spool__now_us();
  pm_seg_hdr_encode(hdr, &h);
  fd = openat(s->dirfd, g->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd < 0) {
    pm_error("spool: cannot create %s/%s: %s", s->dir, g->name,
             strerror(errno));
    free(g);
    return -1;
  }
  rc = pwrite(fd, hdr, sizeof(hdr), 0) == (ssize_t)sizeof(hdr) ? 0 : -1;
  if (rc == 0)
    rc = do_fsync(s, fd);
  if (rc == 0)
    rc = pm_spool__fsync_dir(s->dirfd);
  if (rc != 0) {
    pm_error("spool: cannot create %s/%s: %s", s->dir, g->name,
             strerror(errno));
    close(fd);
    if (unlinkat(s->dirfd, g->name, 0) == 0)
      pm_spool__fsync_dir(s->dirfd);
    free(g);
    return -1;
  }
  g->first_seq = first_seq;
  g->last_seq = first_seq - 1;
  g->end = PM_SEG_HDR;
  g->wfd = fd;
  g->rfd = -1;
  pthread_mutex_lock(&s->mu);
  g->gen = ++s->next_gen;
  rc = pm_spool__add_seg(s, g);
  pthread_mutex_unlock(&s->mu);
  if (rc != 0) {
    close(fd);
    unlinkat(s->dirfd, g->name, 0);
    free(g);
    return -1;
  }
  s->active = g;
  pm_idset_clear(&s->seg_series);
  return 0;
}

/* A failed group: cut the active segment back to its last durable
 * offset, never write it again. */
static void seg_fail(pm_spool_t *s) {
  pm_spool_seg_t *a = s->active;
  int gone = 0;
  if (ftruncate(a->wfd, (off_t)a->end) == 0)
    fdatasync(a->wfd);
  close(a->wfd);
  a->wfd = -1;
  s->active = NULL;
  s->rotate = 0;
  pm_idset_clear(&s->seg_series);
  if (a->end == PM_SEG_HDR && unlinkat(s->dirfd, a->name, 0) == 0) {
    /* nothing durable in it: it need not stay */
    pm_spool__fsync_dir(s->dirfd);
    gone = 1;
  }
  pthread_mutex_lock(&s->mu);
  if (gone) {
    a->gone = 1;
    a->doomed = 1;
    s->disk_bytes -= a->end;
    s->reap = 1;
  }
  pthread_mutex_unlock(&s->mu);
}

/* Write and fsync group g. Returns bytes written (> 0), 0 if there was
 * nothing to write, -1 if it failed. */
static int64_t write_group(pm_spool_t *s, pm_spool_group_t *g,
                           uint64_t name_seq) {
  struct iovec iov[2];
  uint64_t off, total, done = 0;

  if (g->data.len == 0)
    return 0;
  if (s->active && s->rotate) {
    close(s->active->wfd);
    pthread_mutex_lock(&s->mu);
    s->active->wfd = -1;
    pthread_mutex_unlock(&s->mu);
    s->active = NULL;
    s->rotate = 0;
  }
  if (!s->active && seg_create(s, name_seq) != 0)
    return -1;
  pm_buf_reset(&s->prefix);
  for (size_t i = 0; i < g->nseries; i++)
    if (!pm_idset_has(&s->seg_series, g->series[i]->id))
      pm_rec_put_series(&s->prefix, g->series[i]);
  if (s->prefix.oom) {
    pm_error("spool: out of memory writing a group");
    seg_fail(s);
    return -1;
  }
  off = s->active->end;
  total = s->prefix.len + g->data.len;
  while (done < total) {
    int k = 0;
    uint64_t skip = done;
    ssize_t w;
    if (skip < s->prefix.len) {
      iov[k++] = (struct iovec){s->prefix.p + skip, s->prefix.len - skip};
      skip = 0;
    } else {
      skip -= s->prefix.len;
    }
    iov[k++] = (struct iovec){g->data.p + skip, g->data.len - skip};
    w = pwritev(s->active->wfd, iov, k, (off_t)(off + done));
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      if (w == 0)
        errno = ENOSPC;
      break;
    }
    done += (uint64_t)w;
  }
  if (done < total || do_fsync(s, s->active->wfd) != 0) {
    pm_error("spool: %s %s/%s failed: %s; the group's %" PRIu64
             " record(s) are refused, the segment is closed",
             done < total ? "writing" : "fsync of", s->dir, s->active->name,
             strerror(errno), g->nrecs);
    seg_fail(s);
    return -1;
  }
  for (size_t i = 0; i < g->nseries; i++)
    pm_idset_add(&s->seg_series, g->series[i]->id);
  return (int64_t)total;
}

/* After a group (locked): publish it, or fail it; queue completions. */
static void finish_group(pm_spool_t *s, pm_spool_group_t *g, int64_t wrote) {
  int64_t now = pm_spool__now_us();
  int ok = wrote >= 0;

  if (wrote > 0) {
    pm_spool_seg_t *a = s->active;
    a->end += (uint64_t)wrote;
    s->disk_bytes += (uint64_t)wrote;
    if (g->nrecs) {
      a->last_seq = g->last_seq;
      a->nrecs += g->nrecs;
      s->durable_seq = g->last_seq;
      s->ready = 1;
      pm_spool__ckpt(s, g->first_seq, g->start_wall_us);
    }
    for (size_t i = 0; i < g->nkeys; i++) {
      pm_keyent_t *e = pm_keyidx_find(&s->keys, g->keys[i].h, now);
      if (e && e->seq == g->keys[i].seq && e->gen == 0)
        e->gen = a->gen;
    }
    s->st.groups++;
    if (a->end >= s->segment_size)
      s->rotate = 1;
  } else if (!ok) {
    pm_spool_group_t *p = &s->pend;
    s->st.fsync_failures++;
    if (g->nrecs) {
      if (s->nfailed == PM_SPOOL_FAILED_MAX) {
        memmove(&s->failed[0], &s->failed[1],
                (PM_SPOOL_FAILED_MAX - 1) * sizeof(s->failed[0]));
        s->nfailed--;
      }
      s->failed[s->nfailed].a = g->first_seq;
      s->failed[s->nfailed].b = g->last_seq;
      s->nfailed++;
    }
    for (size_t i = 0; i < g->nkeys; i++) {
      pm_spool_gkey_t *k = &g->keys[i];
      pm_keyent_t *e = pm_keyidx_find(&s->keys, k->h, now);
      if (!e || e->seq != k->seq || e->gen != 0)
        continue;
      if (!k->carried) {
        /* Its samples failed: the sender's retry is not a duplicate. */
        pm_keyent_forget(e);
      } else if (grow(&p->keys, &p->capkeys, p->nkeys + 1, sizeof(*p->keys)) ==
                 0) {
        /* Its old segment is still there (deletion waits): try again. */
        pm_rec_put_key(&p->data, k->h, k->seen_us, k->seq);
        p->keys[p->nkeys++] = *k;
        group_touch(s);
      }
    }
    for (size_t i = 0; i < s->nsegs; i++)
      if (s->segs[i]->doomed && !s->segs[i]->gone &&
          s->segs[i]->del_after <= g->no) {
        s->segs[i]->del_after = p->no;
        s->doomed_waiting = 1;
      }
  }
  for (size_t i = 0; i < g->ncomps; i++) {
    pm_spool_comp_t *c = &g->comps[i];
    int st = c->wait_seq ? (in_failed(s, c->wait_seq) ? PM_EIO : 0)
             : ok        ? 0
                         : PM_EIO;
    if (push_done(s, c->cb, c->arg, st) != 0)
      pm_error("spool: out of memory: a completion is lost");
  }
  s->inflight_bytes = 0;
}

/* Unlink the doomed segments whose keys are carried (unlocked). */
static void delete_doomed(pm_spool_t *s, uint64_t upto_group) {
  pm_spool_seg_t **v = NULL;
  size_t n = 0, cap = 0;

  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < s->nsegs; i++) {
    pm_spool_seg_t *g = s->segs[i];
    if (g->doomed && !g->gone && g->del_after <= upto_group &&
        grow(&v, &cap, n + 1, sizeof(*v)) == 0)
      v[n++] = g;
  }
  pthread_mutex_unlock(&s->mu);
  if (!n)
    return;
  for (size_t i = 0; i < n; i++)
    if (unlinkat(s->dirfd, v[i]->name, 0) != 0 && errno != ENOENT)
      pm_error("spool: cannot delete %s/%s: %s", s->dir, v[i]->name,
               strerror(errno));
  if (pm_spool__fsync_dir(s->dirfd) != 0)
    pm_error("spool: fsync of %s failed: %s", s->dir, strerror(errno));
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < n; i++)
    v[i]->gone = 1;
  s->reap = 1;
  pthread_mutex_unlock(&s->mu);
  free(v);
}

static void *flusher(void *arg) {
  pm_spool_t *s = arg;
  struct timespec ts;

  pthread_mutex_lock(&s->mu);
  for (;;) {
    pm_spool_group_t tmp;
    uint64_t name_seq;
    int64_t wrote;

    while (!s->stop && group_empty(&s->pend) && !s->doomed_waiting)
      pthread_cond_wait(&s->cv, &s->mu);
    if (s->stop && group_empty(&s->pend) && !s->doomed_waiting)
      break;
    if (s->commit_delay_us > 0 && s->pend.start_us) {
      int64_t deadline = s->pend.start_us + s->commit_delay_us;
      ts.tv_sec = deadline / 1000000;
      ts.tv_nsec = (deadline % 1000000) * 1000;
      while (!s->stop && s->pend.data.len < s->commit_bytes &&
             mono_us() < deadline)
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    /* Swap: the pending group becomes ours; appends go on into a fresh
     * one (our previous buffers, emptied). */
    tmp = s->out;
    s->out = s->pend;
    s->pend = tmp;
    group_reset(&s->pend);
    s->pend.no = s->out.no + 1;
    s->doomed_waiting = 0;
    s->inflight_bytes = s->out.data.len;
    name_seq = s->out.first_seq;
    if (!name_seq) {
      /* Keys only: a new segment gets a seq of its own, so no two
       * segments ever share a name. */
      name_seq = s->next_seq;
      if (s->out.data.len && (!s->active || s->rotate))
        s->next_seq++;
    }
    pthread_mutex_unlock(&s->mu);

    wrote = write_group(s, &s->out, name_seq);

    pthread_mutex_lock(&s->mu);
    finish_group(s, &s->out, wrote);
    pthread_mutex_unlock(&s->mu);
    if (wrote >= 0)
      delete_doomed(s, s->out.no);
    uv_async_send(&s->async);
    pthread_mutex_lock(&s->mu);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* ------------------------------------------------------------------ */
/* the loop side */

/* Free the segments the flusher deleted (loop thread). */
static void reap(pm_spool_t *s) {
  size_t j = 0;
  pthread_mutex_lock(&s->mu);
  if (s->reap) {
    s->reap = 0;
    for (size_t i = 0; i < s->nsegs; i++) {
      pm_spool_seg_t *g = s->segs[i];
      if (!g->gone) {
        s->segs[j++] = g;
        continue;
      }
      if (s->cur_seg == g)
        s->cur_seg = NULL;
      if (s->mark_seg == g)
        s->mark_seg = NULL;
      seg_free(g);
    }
    s->nsegs = j;
  }
  pthread_mutex_unlock(&s->mu);
}

static void on_async(uv_async_t *h) {
  pm_spool_t *s = h->data;
  pm_spool_done_t *d;
  size_t n;
  int ready;

  pthread_mutex_lock(&s->mu);
  d = s->done;
  n = s->ndone;
  s->done = NULL;
  s->ndone = s->capdone = 0;
  ready = s->ready;
  s->ready = 0;
  pthread_mutex_unlock(&s->mu);
  reap(s);
  for (size_t i = 0; i < n; i++)
    d[i].cb(d[i].arg, d[i].status);
  free(d);
  if (ready && s->on_ready && !s->closing)
    s->on_ready(s->ready_arg);
}

/* The segment after g (first_seq order) still held: not acked away (its
 * file may be unlinked any moment); locked. */
static pm_spool_seg_t *next_seg(pm_spool_t *s, const pm_spool_seg_t *g) {
  for (size_t i = 0; i < s->nsegs; i++)
    if (s->segs[i]->first_seq > g->first_seq && !s->segs[i]->doomed)
      return s->segs[i];
  return NULL;
}

static void enter(pm_spool_t *s, pm_spool_seg_t *g) {
  if (s->cur_seg && s->cur_seg != g && s->cur_seg->rfd >= 0) {
    close(s->cur_seg->rfd);
    s->cur_seg->rfd = -1;
  }
  s->cur_seg = g;
  s->cur_off = PM_SEG_HDR;
  pm_rbuf_reset(&s->rb, -1);
}

/* Position the cursor at the segment that holds after + 1 (locked). */
static void seek(pm_spool_t *s, uint64_t after) {
  pm_spool_seg_t *best = NULL;
  for (size_t i = 0; i < s->nsegs; i++) {
    pm_spool_seg_t *g = s->segs[i];
    if (g->doomed)
      continue;
    if (!best || g->first_seq <= after + 1)
      best = g;
    if (g->first_seq > after + 1)
      break;
  }
  if (s->cur_seg && s->cur_seg != best && s->cur_seg->rfd >= 0) {
    close(s->cur_seg->rfd);
    s->cur_seg->rfd = -1;
  }
  s->cur_seg = NULL;
  if (best)
    enter(s, best);
  s->cur_after = after;
}

size_t pm_spool_read(pm_spool_t *s, uint64_t after_seq, pm_rec_t *out,
                     size_t max) {
  uint64_t after = after_seq, orphans = 0;
  size_t n = 0;

  reap(s);
  pthread_mutex_lock(&s->mu);
  if (!max || after >= s->durable_seq) {
    pthread_mutex_unlock(&s->mu);
    return 0;
  }
  if (s->cur_seg && after < s->cur_after && s->mark_seg &&
      after == s->mark_after && !s->mark_seg->doomed) {
    if (s->mark_seg != s->cur_seg)
      enter(s, s->mark_seg);
    s->cur_off = s->mark_off;
    s->cur_after = after;
  } else if (!s->cur_seg || after < s->cur_after) {
    seek(s, after);
  }
  s->mark_seg = s->cur_seg;
  s->mark_off = s->cur_off;
  s->mark_after = after;
  pthread_mutex_unlock(&s->mu);

  while (n < max && s->cur_seg) {
    pm_spool_seg_t *g = s->cur_seg, *nx;
    pm_rec_view_t v;
    uint64_t end, limit;
    int skipped = 0;

    pthread_mutex_lock(&s->mu);
    end = g->end;
    nx = next_seg(s, g);
    pthread_mutex_unlock(&s->mu);
    if (s->cur_off >= end) {
      if (!nx)
        break;
      enter(s, nx);
      continue;
    }
    limit = end;
    for (size_t i = 0; i < g->nbad; i++) {
      if (s->cur_off >= g->bad[i].a && s->cur_off < g->bad[i].b) {
        s->cur_off = g->bad[i].b;
        skipped = 1;
        break;
      }
      if (g->bad[i].a > s->cur_off && g->bad[i].a < limit)
        limit = g->bad[i].a;
    }
    if (skipped)
      continue;
    if (g->rfd < 0) {
      g->rfd = openat(s->dirfd, g->name, O_RDONLY | O_CLOEXEC);
      if (g->rfd < 0) {
        pm_error("spool: cannot open %s/%s: %s; its records are skipped",
                 s->dir, g->name, strerror(errno));
        s->cur_off = end;
        continue;
      }
    }
    if (s->rb.fd != g->rfd)
      pm_rbuf_reset(&s->rb, g->rfd);
    s->rb.lim = end;
    if (pm_rec_parse(&s->rb, s->cur_off, limit, &v) != PM_PARSE_OK) {
      pm_error("spool: %s/%s: a damaged record at offset %" PRIu64
               "; the rest of the segment is skipped",
               s->dir, g->name, s->cur_off);
      s->cur_off = end;
      continue;
    }
    if (v.type == PM_R_SAMPLES) {
      const pm_samples_view_t *sv = &v.u.samples;
      uint32_t i = after >= sv->first_seq
                       ? (uint32_t)(after - sv->first_seq + 1 < sv->n
                                        ? after - sv->first_seq + 1
                                        : sv->n)
                       : 0;
      pthread_mutex_lock(&s->smu);
      for (; i < sv->n && n < max; i++) {
        int64_t sid;
        pm_rec_t *r = &out[n];
        pm_samples_at(sv, i, &sid, &r->ts_us, &r->value);
        if (!(r->series = lookup_locked(s, sid))) {
          orphans++;
          continue;
        }
        r->seq = sv->first_seq + i;
        after = r->seq;
        n++;
      }
      pthread_mutex_unlock(&s->smu);
      if (i < sv->n) /* out is full: resume inside this record */
        break;
    }
    s->cur_off += v.size;
  }
  if (after > s->cur_after)
    s->cur_after = after;
  if (orphans) {
    pthread_mutex_lock(&s->mu);
    s->st.orphans += orphans;
    pthread_mutex_unlock(&s->mu);
    pm_warn("spool: %" PRIu64
            " record(s) skipped: their series was lost with a damaged range",
            orphans);
  }
  return n;
}

void pm_spool_ack(pm_spool_t *s, uint64_t upto_seq) {
  uint32_t *gens = NULL;
  size_t ngens = 0, cap = 0;
  int64_t now = pm_spool__now_us();

  reap(s);
  pthread_mutex_lock(&s->mu);
  if (upto_seq > s->acked_seq)
    s->acked_seq = upto_seq;
  /* Never the newest segment: it holds the floor of the seqs. */
  for (size_t i = 0; i + 1 < s->nsegs; i++) {
    pm_spool_seg_t *g = s->segs[i];
    if (g->doomed || g->gone || g->last_seq > s->acked_seq)
      continue;
    if (grow(&gens, &cap, ngens + 1, sizeof(*gens)) != 0)
      break;
    gens[ngens++] = g->gen;
    g->doomed = 1;
    g->del_after = s->pend.no;
    s->disk_bytes -= g->end;
  }
  if (ngens) {
    pm_spool_group_t *p = &s->pend;
    for (size_t i = 0; i < s->keys.cap; i++) {
      pm_keyent_t *e = &s->keys.slots[i];
      int hit = 0;
      if ((!e->h[0] && !e->h[1]) || e->gen == 0 ||
          pm_keyent_expired(&s->keys, e, now))
        continue;
      for (size_t j = 0; j < ngens && !hit; j++)
        hit = e->gen == gens[j];
      if (!hit)
        continue;
      if (grow(&p->keys, &p->capkeys, p->nkeys + 1, sizeof(*p->keys)) != 0) {
        pm_error("spool: out of memory carrying keys forward");
        break;
      }
      pm_rec_put_key(&p->data, e->h, e->seen_us, e->seq);
      p->keys[p->nkeys++] =
          (pm_spool_gkey_t){{e->h[0], e->h[1]}, e->seen_us, e->seq, 1};
      e->gen = 0;
    }
    s->doomed_waiting = 1;
    group_touch(s);
    pthread_cond_signal(&s->cv);
  }
  /* Checkpoints: keep the newest at or before the oldest unacked seq. */
  {
    size_t k = 0;
    while (k + 1 < s->nckpt && s->ckpt[k + 1].seq <= s->acked_seq + 1)
      k++;
    if (k) {
      memmove(s->ckpt, s->ckpt + k, (s->nckpt - k) * sizeof(*s->ckpt));
      s->nckpt -= k;
    }
  }
  pthread_mutex_unlock(&s->mu);
  free(gens);
}

static size_t len_locked(pm_spool_t *s) {
  uint64_t n = s->pend.nrecs + s->out.nrecs * (s->inflight_bytes > 0);
  for (size_t i = 0; i < s->nsegs; i++) {
    pm_spool_seg_t *g = s->segs[i];
    if (g->doomed || g->gone || g->last_seq <= s->acked_seq)
      continue;
    if (g->first_seq > s->acked_seq)
      n += g->nrecs;
    else
      n += g->last_seq - s->acked_seq < g->nrecs ? g->last_seq - s->acked_seq
                                                 : g->nrecs;
  }
  return (size_t)n;
}

size_t pm_spool_len(pm_spool_t *s) {
  size_t n;
  pthread_mutex_lock(&s->mu);
  n = len_locked(s);
  pthread_mutex_unlock(&s->mu);
  return n;
}

int pm_spool_full(pm_spool_t *s) {
  int full;
  pthread_mutex_lock(&s->mu);
  full = s->closing ||
         (s->max_size && s->disk_bytes + s->inflight_bytes + s->pend.data.len +
                                 pm_rec_samples_size(1) >
                             s->max_size);
  pthread_mutex_unlock(&s->mu);
  return full;
}

uint64_t pm_spool_last_seq(pm_spool_t *s) {
  uint64_t v;
  pthread_mutex_lock(&s->mu);
  v = s->durable_seq;
  pthread_mutex_unlock(&s->mu);
  return v;
}

uint64_t pm_spool_bytes(pm_spool_t *s) {
  uint64_t v;
  pthread_mutex_lock(&s->mu);
  v = s->disk_bytes + s->inflight_bytes + s->pend.data.len;
  pthread_mutex_unlock(&s->mu);
  return v;
}

int64_t pm_spool_oldest_ts(pm_spool_t *s) {
  int64_t v = 0;
  pthread_mutex_lock(&s->mu);
  if (s->durable_seq > s->acked_seq && s->nckpt)
    v = s->ckpt[0].us;
  else if (s->pend.nrecs)
    v = s->pend.start_wall_us;
  pthread_mutex_unlock(&s->mu);
  return v;
}

void pm_spool_stats(pm_spool_t *s, pm_spool_stats_t *out) {
  pthread_mutex_lock(&s->mu);
  *out = s->st;
  out->records = len_locked(s);
  out->bytes = s->disk_bytes + s->inflight_bytes + s->pend.data.len;
  out->segments = 0;
  for (size_t i = 0; i < s->nsegs; i++)
    out->segments += !s->segs[i]->doomed && !s->segs[i]->gone;
  pthread_mutex_unlock(&s->mu);
}

const char *pm_spool_id(const pm_spool_t *s) {
  return s->id;
}

void pm_spool__fail_fsyncs(pm_spool_t *s, int n) {
  atomic_store(&s->fail_syncs, n);
}

/* ------------------------------------------------------------------ */
/* open, close, free */

static void destroy(pm_spool_t *s) {
  for (size_t i = 0; i < s->nsegs; i++)
    seg_free(s->segs[i]);
  free(s->segs);
  for (size_t i = 0; i < s->nser; i++) {
    free(s->ser[i]->metric);
    free(s->ser[i]->labels_json);
    free(s->ser[i]);
  }
  free(s->ser);
  pm_idmap_free(&s->ser_idx);
  pm_keyidx_free(&s->keys);
  group_free(&s->pend);
  group_free(&s->out);
  pm_idset_free(&s->seg_series);
  pm_buf_free(&s->prefix);
  pm_rbuf_free(&s->rb);
  free(s->done);
  if (s->dirfd >= 0)
    close(s->dirfd);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  pthread_mutex_destroy(&s->smu);
  free(s->dir);
  free(s);
}

int pm_spool_open(uv_loop_t *loop, const pm_spool_opts_t *o, pm_spool_t **out,
                  char *err, size_t errlen) {
  pm_spool_t *s;
  pthread_condattr_t ca;
  int rc;

  if (!loop || !o || !o->dir || !*o->dir || !out) {
    snprintf(err, errlen, "spool: no folder given");
    return PM_EINVAL;
  }
  if (!(s = calloc(1, sizeof(*s))) || !(s->dir = strdup(o->dir))) {
    free(s);
    snprintf(err, errlen, "spool: out of memory");
    return PM_ENOMEM;
  }
  s->loop = loop;
  s->dirfd = -1;
  s->max_size = o->max_size;
  s->segment_size = o->segment_size ? o->segment_size : DEF_SEGMENT;
  s->commit_delay_us = o->commit_delay_us ? o->commit_delay_us : DEF_DELAY_US;
  s->commit_bytes = o->commit_bytes ? o->commit_bytes : DEF_COMMIT_BYTES;
  s->on_ready = o->on_ready;
  s->ready_arg = o->ready_arg;
  s->ckpt_step_us = 1000000;
  s->pend.no = 1;
  pthread_mutex_init(&s->mu, NULL);
  pthread_mutex_init(&s->smu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (pm_keyidx_init(&s->keys, o->dedup_window_us <= 0 ? DEF_WINDOW_US
                               : o->dedup_window_us > MAX_WINDOW_US
                                   ? MAX_WINDOW_US
                                   : o->dedup_window_us) != 0) {
    destroy(s);
    snprintf(err, errlen, "spool: out of memory");
    return PM_ENOMEM;
  }
  if ((mkdir(s->dir, 0750) != 0 && errno != EEXIST) ||
      (s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
    snprintf(err, errlen, "spool: cannot create or open %s: %s", s->dir,
             strerror(errno));
    destroy(s);
    return PM_EIO;
  }
  if ((rc = pm_spool__recover(s, err, errlen)) != 0) {
    destroy(s);
    return rc;
  }
  /* The flusher touches the async handle only after a group, and none
   * can be appended before open returns. */
  if (pthread_create(&s->thr, NULL, flusher, s) != 0) {
    snprintf(err, errlen, "spool: cannot start the flusher thread");
    destroy(s);
    return PM_EINTERNAL;
  }
  s->thr_started = 1;
  if (uv_async_init(loop, &s->async, on_async) != 0) {
    snprintf(err, errlen, "spool: cannot create an async handle");
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thr, NULL);
    destroy(s);
    return PM_EINTERNAL;
  }
  s->async.data = s;
  if (s->durable_seq > 0) {
    s->ready = 1;
    uv_async_send(&s->async);
  }
  *out = s;
  return 0;
}

static void on_closed(uv_handle_t *h) {
  pm_spool_t *s = h->data;
  if (s->close_cb)
    s->close_cb(s->close_arg);
}

void pm_spool_close(pm_spool_t *s, void (*cb)(void *arg), void *arg) {
  pthread_mutex_lock(&s->mu);
  s->closing = 1;
  s->stop = 1;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
  if (s->thr_started) {
    pthread_join(s->thr, NULL);
    s->thr_started = 0;
  }
  if (s->active) {
    close(s->active->wfd);
    s->active->wfd = -1;
    s->active = NULL;
  }
  if (pm_spool__write_meta(s, s->next_seq) != 0)
    pm_error("spool: cannot write %s/spool.meta at close: %s", s->dir,
             strerror(errno));
  on_async(&s->async);
  s->close_cb = cb;
  s->close_arg = arg;
  uv_close((uv_handle_t *)&s->async, on_closed);
}

void pm_spool_free(pm_spool_t *s) {
  if (s)
    destroy(s);
}

static size_t src_read(void *s, uint64_t after, pm_rec_t *out, size_t max) {
  return pm_spool_read(s, after, out, max);
}
static void src_ack(void *s, uint64_t upto) {
  pm_spool_ack(s, upto);
}
static size_t src_len(void *s) {
  return pm_spool_len(s);
}
static int src_full(void *s) {
  return pm_spool_full(s);
}
static uint64_t src_last_seq(void *s) {
  return pm_spool_last_seq(s);
}

pm_source_t pm_spool_source(pm_spool_t *s) {
  return (pm_source_t){s, src_read, src_ack, src_len, src_full, src_last_seq};
}
