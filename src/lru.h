/* sluice - SPDX-License-Identifier: MIT
 *
 * An intrusive recency list for bounded caches (static files, auth
 * decisions, rate-limit buckets): a node lives inside the entry
 * (sl_container_of gets it back), the head is the most recently used,
 * the tail the first to evict. Not thread-safe: its owner locks.
 */
#ifndef SL_LRU_H
#define SL_LRU_H

#include "sl.h"

typedef struct sl_lru_node {
    struct sl_lru_node *prev, *next;
} sl_lru_node_t;

typedef struct sl_lru {
    sl_lru_node_t *head, *tail;
} sl_lru_t;

static inline void sl_lru_remove(sl_lru_t *l, sl_lru_node_t *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->prev = n->next = NULL;
}

static inline void sl_lru_push(sl_lru_t *l, sl_lru_node_t *n)
{
    n->prev = NULL;
    n->next = l->head;
    if (l->head)
        l->head->prev = n;
    l->head = n;
    if (!l->tail)
        l->tail = n;
}

/* Used now: to the head. */
static inline void sl_lru_touch(sl_lru_t *l, sl_lru_node_t *n)
{
    sl_lru_remove(l, n);
    sl_lru_push(l, n);
}

#endif
