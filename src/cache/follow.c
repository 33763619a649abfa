/* sluice - SPDX-License-Identifier: MIT
 *
 * Following a fill from any worker. An entry's readers are kept in groups,
 * one per worker; a group's list is changed only by its own worker (under
 * the entry's mutex, so that the fill's worker can read offsets). When the
 * fill moves, its worker pumps its own group at once and posts one wake-up
 * to each other worker that has readers (coalesced: a group already
 * posted is not posted again until its worker has run it). Readers of a
 * transient entry report their progress to the fill's worker the same
 * way, which frees what all have read and resumes a paused fill.
 *
 *   fill (worker A) --append, cc_wake--> group A: pump at once
 *                                   \--> group B: sl_worker_post(B) --> pump
 *   reader (worker B) --moved--> sl_worker_post(A) --> cc_fill_readers_moved
 */
#include "cache_int.h"
#include "../worker.h"

static int my_worker(void)
{
    sl_worker_t *w = sl_worker_current();
    return w ? w->id : -1;
}

static cc_group_t *group_of(cc_entry_t *e)
{
    int id = my_worker();
    for (cc_group_t *g = e->groups; g; g = g->next)
        if (g->worker == id)
            return g;
    cc_group_t *g = sl_calloc(1, sizeof(*g));
    g->e = e;
    g->worker = id;
    g->w = sl_worker_current();
    g->next = e->groups;
    e->groups = g;
    return g; /* freed with the entry */
}

void cc_attach_locked(cc_reader_t *r)
{
    cc_group_t *g = group_of(r->e);
    r->g = g;
    r->prev = NULL;
    r->next = g->readers;
    if (g->readers)
        g->readers->prev = r;
    g->readers = r;
    r->attached = 1;
}

void cc_detach(cc_reader_t *r)
{
    if (!r->attached)
        return;
    cc_entry_t *e = r->e;
    pthread_mutex_lock(&e->mu);
    cc_group_t *g = r->g;
    if (r->prev)
        r->prev->next = r->next;
    else
        g->readers = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->attached = 0;
    pthread_mutex_unlock(&e->mu);
    cc_readers_moved(e);
}

int cc_has_readers(const cc_entry_t *e)
{
    for (const cc_group_t *g = e->groups; g; g = g->next)
        if (g->readers)
            return 1;
    return 0;
}

uint64_t cc_slowest(const cc_entry_t *e)
{
    uint64_t m = e->body_len;
    for (const cc_group_t *g = e->groups; g; g = g->next)
        for (const cc_reader_t *r = g->readers; r; r = r->next)
            m = SL_MIN(m, r->off);
    return m;
}

/* ---- waking ---- */

static void pump_group(cc_group_t *g)
{
    /* Only this worker changes the list; a pump may take its own reader
     * off it (hence nx), never another. */
    for (cc_reader_t *r = g->readers, *nx; r; r = nx) {
        nx = r->next;
        cc_reader_pump(r);
    }
}

static void on_group_wake(sl_worker_t *w, void *arg)
{
    SL_UNUSED(w);
    cc_group_t *g = arg;
    cc_entry_t *e = g->e;
    pthread_mutex_lock(&e->mu);
    g->posted = 0;
    pthread_mutex_unlock(&e->mu);
    pump_group(g);
    cc_entry_unref(e); /* the post's */
}

void cc_wake(cc_entry_t *e)
{
    cc_group_t *mine = NULL, *post[SL_M_MAX_WORKERS + 1];
    size_t n = 0;
    int id = my_worker();
    pthread_mutex_lock(&e->mu);
    for (cc_group_t *g = e->groups; g; g = g->next) {
        if (!g->readers)
            continue;
        if (g->worker == id)
            mine = g;
        else if (!g->posted && g->w && n < SL_ARRAY_LEN(post))
            g->posted = 1, post[n++] = g;
    }
    pthread_mutex_unlock(&e->mu);
    for (size_t i = 0; i < n; i++) {
        cc_entry_ref(e);
        if (sl_worker_post(post[i]->w, on_group_wake, post[i]) != 0) {
            cc_entry_unref(e); /* that worker's loop is over: its readers are gone */
            pthread_mutex_lock(&e->mu);
            post[i]->posted = 0;
            pthread_mutex_unlock(&e->mu);
        }
    }
    if (mine)
        pump_group(mine);
}

static void on_moved(sl_worker_t *w, void *arg)
{
    SL_UNUSED(w);
    cc_entry_t *e = arg;
    pthread_mutex_lock(&e->mu);
    e->moved_posted = 0;
    pthread_mutex_unlock(&e->mu);
    cc_fill_readers_moved(e);
    cc_entry_unref(e);
}

void cc_readers_moved(cc_entry_t *e)
{
    if (my_worker() == e->owner) {
        cc_fill_readers_moved(e);
        return;
    }
    pthread_mutex_lock(&e->mu);
    int post = e->transient && !e->moved_posted && e->owner_w;
    e->moved_posted |= post;
    pthread_mutex_unlock(&e->mu);
    if (!post)
        return;
    cc_entry_ref(e);
    if (sl_worker_post(e->owner_w, on_moved, e) != 0)
        cc_entry_unref(e); /* the fill's worker is gone, and its fill with it */
}
