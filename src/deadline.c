/*
 * deadline.c - the pool of one-shot deadline timers (no Lua object) the
 * scheduler uses for sleep and timeouts. Below the scheduler: it knows the
 * loop and the handle base, nothing of tasks.
 */
#include <stdlib.h>
#include "coru.h"

struct coru_deadline {
  coru_handle base;
  uv_timer_t t;
  void (*fn)(void *);
  void *data;
  coru_deadline *next_free;
};

#define POOL_MAX 256

static void deadline_free(coru_handle *h) { (void)h; }
static void deadline_closed(uv_handle_t *h) { free(h->data); }
static coru_htype deadline_type = {"coru.deadline", CORU_K_INTERNAL, CORU_K_INTERNAL, NULL, NULL,
                                   deadline_free, NULL};

static void deadline_release(coru_deadline *d) {
  d->fn = NULL;
  if (coru_R->dl_nfree < POOL_MAX && coru_R->loop && !coru_R->shutting_down) {   /* exit closes the pool once */
    d->next_free = coru_R->dl_free;
    coru_R->dl_free = d;
    coru_R->dl_nfree++;
  } else {
    d->base.closing = 1;
    uv_close((uv_handle_t *)&d->t, deadline_closed);
  }
}

static void deadline_cb(uv_timer_t *t) {
  coru_deadline *d = t->data;
  void (*fn)(void *) = d->fn;
  void *data = d->data;
  deadline_release(d);
  if (fn) fn(data);
}

coru_deadline *coru_deadline_start(uint64_t ms, void (*fn)(void *), void *data) {
  coru_deadline *d = coru_R->dl_free;
  if (d) {
    coru_R->dl_free = d->next_free;
    coru_R->dl_nfree--;
  } else {
    d = calloc(1, sizeof *d);
    if (!d) abort();
    d->base.uvh = (uv_handle_t *)&d->t;
    d->base.type = &deadline_type;
    d->base.self_ref = d->base.close_ref = d->base.cb_ref = LUA_NOREF;
    uv_timer_init(coru_R->loop, &d->t);
    d->t.data = d;
  }
  d->fn = fn;
  d->data = data;
  uv_timer_start(&d->t, deadline_cb, ms, 0);
  return d;
}

void coru_deadline_stop(coru_deadline *d) {
  uv_timer_stop(&d->t);
  deadline_release(d);
}

/* Shutdown: the pooled timers go with the loop. */
void coru_deadline_close_all(void) {
  while (coru_R->dl_free) {
    coru_deadline *d = coru_R->dl_free;
    coru_R->dl_free = d->next_free;
    d->base.closing = 1;
    uv_close((uv_handle_t *)&d->t, deadline_closed);
  }
  coru_R->dl_nfree = 0;
}

