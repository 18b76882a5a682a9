#include "shim.h"

// copy_str puts s into buf at *used as the entry's key; false when it does
// not fit.
static int copy_str(weir_rec *r, const char *s, char *buf, int64_t cap, int64_t *used) {
	size_t n = s ? strlen(s) : 0;
	if (n > 1024) n = 1024;
	if (*used + (int64_t)n > cap) return 0;
	memcpy(buf + *used, s, n);
	r->key_off = *used;
	r->key_len = (int32_t)n;
	*used += n;
	return 1;
}

// weir_consume reads up to max entries from rkq: the first wait is at
// most timeout_ms, then only what is already queued. Keys and values are
// copied into buf (cap bytes). An event that does not fit stays in
// *pending (with its message in *pending_msg) for the next call; when not even one fits, it returns -1 and
// *need is the buffer size it takes. It returns the number of entries and
// the bytes of buf used in *used, which it starts from (a caller reading
// into one buffer in several calls passes what the last call left).
// fill_msg makes r the entry of the fetched message m (a record, a
// partition end or an error), copying its key and value into buf. When
// they do not fit it returns 0 and *size is the room they take.
static int fill_msg(weir_rec *r, const rd_kafka_message_t *m, char *buf, int64_t cap, int64_t *used, int64_t *size) {
	memset(r, 0, sizeof(*r));
	r->key_off = -1;
	r->val_off = -1;
	r->partition = m->partition;
	r->offset = m->offset;
	if (m->err) {
		r->err = m->err;
		if (m->err == WEIR_ERR_PARTITION_EOF) {
			r->kind = WEIR_EOF;
			return 1;
		}
		r->kind = WEIR_ERR;
		const char *msg = rd_kafka_message_errstr(m);
		if (!copy_str(r, msg ? msg : rd_kafka_err2str(m->err), buf, cap, used)) {
			*size = 1024;
			return 0;
		}
		return 1;
	}
	int64_t k = m->key ? (int64_t)m->key_len : 0;
	int64_t v = m->payload ? (int64_t)m->len : 0;
	if (*used + k + v > cap) {
		*size = k + v;
		return 0;
	}
	r->kind = WEIR_REC;
	if (m->key) {
		memcpy(buf + *used, m->key, k);
		r->key_off = *used;
		r->key_len = (int32_t)k;
		*used += k;
	}
	if (m->payload) {
		memcpy(buf + *used, m->payload, v);
		r->val_off = *used;
		r->val_len = (int32_t)v;
		*used += v;
	}
	rd_kafka_timestamp_type_t tt = 0;
	r->ts = rd_kafka_message_timestamp(m, &tt);
	r->tstype = tt;
	return 1;
}

int weir_consume(rd_kafka_queue_t *rkq, int timeout_ms, weir_rec *recs, int max, char *buf, int64_t cap,
                        int64_t *used, int64_t *need, rd_kafka_event_t **pending, const rd_kafka_message_t **pending_msg) {
	int n = 0;
	*need = 0;
	while (n < max) {
		rd_kafka_event_t *ev = *pending;
		const rd_kafka_message_t *held = *pending_msg;
		*pending = NULL;
		*pending_msg = NULL;
		if (!ev) {
			ev = rd_kafka_queue_poll(rkq, n == 0 ? timeout_ms : 0);
			timeout_ms = 0;
			if (!ev) break;
		}
		weir_rec *r = &recs[n];
		memset(r, 0, sizeof(*r));
		r->key_off = -1;
		r->val_off = -1;
		int type = rd_kafka_event_type(ev);
		if (type == WEIR_EVENT_FETCH) {
			// A fetch event holds one message, which message_next hands
			// out once: an event held over keeps its message.
			const rd_kafka_message_t *m = held ? held : rd_kafka_event_message_next(ev);
			if (!m) {
				rd_kafka_event_destroy(ev);
				continue;
			}
			int64_t size = 0;
			if (!fill_msg(r, m, buf, cap, used, &size)) {
				*pending = ev;
				*pending_msg = m;
				if (n == 0) { *need = size; return -1; }
				break;
			}
		} else if (type == WEIR_EVENT_ERROR) {
			rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
			r->err = err;
			if (err == WEIR_ERR_PARTITION_EOF) {
				rd_kafka_topic_partition_t *tp = rd_kafka_event_topic_partition(ev);
				if (!tp) {
					rd_kafka_event_destroy(ev);
					continue;
				}
				r->kind = WEIR_EOF;
				r->partition = tp->partition;
				r->offset = tp->offset;
				rd_kafka_topic_partition_destroy(tp);
			} else {
				r->kind = WEIR_ERR;
				r->fatal = rd_kafka_event_error_is_fatal(ev);
				if (!copy_str(r, rd_kafka_event_error_string(ev), buf, cap, used)) {
					*pending = ev;
					if (n == 0) { *need = 1024; return -1; }
					break;
				}
			}
		} else if (type == WEIR_EVENT_OFFSET_COMMIT) {
			rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
			rd_kafka_topic_partition_list_t *l = rd_kafka_event_topic_partition_list(ev);
			r->kind = WEIR_COMMIT;
			r->partition = -1;
			if (!err && l) {
				for (int i = 0; i < l->cnt; i++) {
					if (l->elems[i].err) {
						err = l->elems[i].err;
						r->partition = l->elems[i].partition;
						break;
					}
				}
			}
			const char *msg = r->partition < 0 ? rd_kafka_event_error_string(ev) : rd_kafka_err2str(err);
			r->err = err;
			if (err && !copy_str(r, msg, buf, cap, used)) {
				*pending = ev;
				if (n == 0) { *need = 1024; return -1; }
				break;
			}
		} else {
			// Rebalance (the engine assigns partitions itself), stats and
			// token refresh events are not used by the engine.
			rd_kafka_event_destroy(ev);
			continue;
		}
		rd_kafka_event_destroy(ev);
		n++;
	}
	return n;
}

// weir_consume_msgs reads up to max entries from rkq, a queue that only
// partitions' fetch queues are forwarded to (records, partition ends and
// partition errors: what rd_kafka_consume_batch_queue returns), as
// weir_consume does: the first wait is at most timeout_ms, keys and values
// are copied into buf from *used on, and it returns the number of entries
// or -1 with *need set when not even one fits. It takes the messages in
// batches of up to h->cap into h: what does not fit in buf stays there for
// the next call. librdkafka serves such a batch with one poll bookkeeping
// (two clock reads), where an event poll does it once per message.
int weir_consume_msgs(rd_kafka_queue_t *rkq, int timeout_ms, weir_held *h, weir_rec *recs, int max, char *buf,
                      int64_t cap, int64_t *used, int64_t *need) {
	int n = 0;
	int drained = 0;
	*need = 0;
	while (n < max) {
		if (h->off == h->n) {
			if (drained) break;
			int want = max - n < h->cap ? max - n : h->cap;
			ssize_t got = rd_kafka_consume_batch_queue(rkq, n == 0 ? timeout_ms : 0, h->msgs, (size_t)want);
			timeout_ms = 0;
			if (got <= 0) break;
			h->off = 0;
			h->n = (int)got;
			drained = got < want; // the queue held no more
		}
		rd_kafka_message_t *m = h->msgs[h->off];
		int64_t size = 0;
		if (!fill_msg(&recs[n], m, buf, cap, used, &size)) {
			if (n == 0) { *need = size; return -1; }
			break;
		}
		rd_kafka_message_destroy(m);
		h->msgs[h->off++] = NULL;
		n++;
	}
	return n;
}

// weir_wake yields the fetch queue (opaque): an event on the consumer
// queue ends a wait on the fetch queue.
static void weir_wake(rd_kafka_t *rk, void *opaque) {
	(void)rk;
	rd_kafka_queue_yield((rd_kafka_queue_t *)opaque);
}

// weir_wake_on makes every event on consumerq end a wait on fetchq, or
// (fetchq NULL) stops it. librdkafka calls the callback with consumerq's
// lock held, so once this returns with NULL no call is under way.
void weir_wake_on(rd_kafka_queue_t *consumerq, rd_kafka_queue_t *fetchq) {
	rd_kafka_queue_cb_event_enable(consumerq, fetchq ? weir_wake : NULL, fetchq);
}

// weir_held_free destroys the messages h still holds.
void weir_held_free(weir_held *h) {
	for (; h->off < h->n; h->off++) {
		rd_kafka_message_destroy(h->msgs[h->off]);
		h->msgs[h->off] = NULL;
	}
}

// weir_produce produces n records in order to rkt (partition -1: the
// topic's partitioner), copying them: record i's key is buf[koff[i]:]
// (klen[i] bytes; -1: null), its value follows it (vlen[i] bytes; -1:
// null). It stops at the first record librdkafka refuses, returns how many
// it produced and the refusal's error code in *err.
//
// It goes through rd_kafka_produce_batch, WEIR_PRODUCE_BATCH records at a
// time: one look at the clock and one hold of the topic's lock per batch,
// where rd_kafka_produce takes two clock readings and the lock per record.
// A full queue refuses the record it is reached at and every one after it
// in that batch (librdkafka propagates the error), so the records produced
// are always a prefix. After another refusal (a record too large, say) the
// batch's later records may have been produced: the caller fails on that
// error, and its transaction with it.
int weir_produce(rd_kafka_topic_t *rkt, int32_t partition, char *buf, int64_t *koff, int32_t *klen, int32_t *vlen,
                        int n, void *opaque, int *err) {
	rd_kafka_message_t msgs[WEIR_PRODUCE_BATCH];
	*err = 0;
	for (int done = 0; done < n;) {
		int m = n - done < WEIR_PRODUCE_BATCH ? n - done : WEIR_PRODUCE_BATCH;
		memset(msgs, 0, sizeof(msgs[0]) * (size_t)m);
		for (int j = 0; j < m; j++) {
			int i = done + j;
			rd_kafka_message_t *r = &msgs[j];
			r->key = klen[i] < 0 ? NULL : buf + koff[i];
			r->key_len = klen[i] < 0 ? 0 : (size_t)klen[i];
			r->payload = vlen[i] < 0 ? NULL : buf + koff[i] + (klen[i] < 0 ? 0 : klen[i]);
			r->len = vlen[i] < 0 ? 0 : (size_t)vlen[i];
			r->_private = opaque;
		}
		int good = rd_kafka_produce_batch(rkt, partition, WEIR_MSG_F_COPY, msgs, m);
		if (good < m) {
			for (int j = 0; j < m; j++) {
				if (msgs[j].err) {
					*err = msgs[j].err;
					return done + j;
				}
			}
		}
		done += m;
	}
	return n;
}

// put copies s (at most 1024 bytes) into buf at *used; it sets *off and
// *len, or returns 0 when it does not fit.
static int put(const char *s, char *buf, int64_t cap, int64_t *used, int64_t *off, int32_t *len) {
	size_t n = s ? strlen(s) : 0;
	if (n > 1024) n = 1024;
	if (*used + (int64_t)n > cap) return 0;
	memcpy(buf + *used, s, n);
	*off = *used;
	*len = (int32_t)n;
	*used += n;
	return 1;
}

// weir_serve serves the main queue of a producer of our own: up to
// max_events events, the first wait at most timeout_ms, then only what is
// already queued. Delivery reports are counted in *counts (added to);
// failed deliveries (as many as there is room for), log lines and errors
// become notes whose strings are copied into buf (cap bytes, at least
// max_notes*2048). It stops before an event when fewer than 1 note is
// left, and returns the number of notes.
int weir_serve(rd_kafka_queue_t *rkq, int timeout_ms, int max_events, weir_note *notes, int max_notes, char *buf,
               int64_t cap, weir_counts *counts) {
	int n = 0;
	int64_t used = 0;
	for (int e = 0; e < max_events && n < max_notes; e++) {
		rd_kafka_event_t *ev = rd_kafka_queue_poll(rkq, e == 0 ? timeout_ms : 0);
		if (!ev) break;
		int type = rd_kafka_event_type(ev);
		if (type == WEIR_EVENT_DR) {
			const rd_kafka_message_t *m;
			while ((m = rd_kafka_event_message_next(ev)) != NULL) {
				if (!m->err) {
					if (m->_private) counts->tagged++;
					else counts->untagged++;
					continue;
				}
				counts->failed++;
				if (n >= max_notes) continue;
				weir_note *o = &notes[n];
				memset(o, 0, sizeof(*o));
				o->kind = WEIR_NOTE_FAILED;
				o->err = m->err;
				if (put(rd_kafka_err2str(m->err), buf, cap, &used, &o->text_off, &o->text_len) &&
				    put(m->rkt ? rd_kafka_topic_name(m->rkt) : "", buf, cap, &used, &o->tag_off, &o->tag_len))
					n++;
			}
		} else if (type == WEIR_EVENT_LOG) {
			const char *fac = NULL, *str = NULL;
			int level = 0;
			if (rd_kafka_event_log(ev, &fac, &str, &level) == 0) {
				weir_note *o = &notes[n];
				memset(o, 0, sizeof(*o));
				o->kind = WEIR_NOTE_LOG;
				o->level = level;
				if (put(str, buf, cap, &used, &o->text_off, &o->text_len) &&
				    put(fac, buf, cap, &used, &o->tag_off, &o->tag_len))
					n++;
			}
		} else if (type == WEIR_EVENT_ERROR) {
			weir_note *o = &notes[n];
			memset(o, 0, sizeof(*o));
			o->kind = WEIR_NOTE_ERR;
			o->err = rd_kafka_event_error(ev);
			o->fatal = rd_kafka_event_error_is_fatal(ev);
			if (put(rd_kafka_event_error_string(ev), buf, cap, &used, &o->text_off, &o->text_len)) n++;
		}
		rd_kafka_event_destroy(ev);
	}
	return n;
}

// weir_produce_headers produces one record with headers: header i's name
// is hbuf at its offset (hkeylen[i] bytes), its value follows (hvallen[i]
// bytes; -1: null). It returns 0 or the error code of the refusal.
int weir_produce_headers(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int32_t partition, void *key, size_t klen, int knull,
                         void *val, size_t vlen, int vnull, char *hbuf, int32_t *hkeylen, int32_t *hvallen, int nh,
                         void *opaque) {
	rd_kafka_headers_t *h = rd_kafka_headers_new(nh > 0 ? (size_t)nh : 1);
	int64_t off = 0;
	for (int i = 0; i < nh; i++) {
		const char *name = hbuf + off;
		off += hkeylen[i];
		const void *v = hvallen[i] < 0 ? NULL : hbuf + off;
		if (hvallen[i] > 0) off += hvallen[i];
		rd_kafka_header_add(h, name, hkeylen[i], v, hvallen[i] < 0 ? 0 : hvallen[i]);
	}
	rd_kafka_resp_err_t err = rd_kafka_producev(
	    rk, WEIR_VTYPE_RKT, rkt, WEIR_VTYPE_PARTITION, partition, WEIR_VTYPE_MSGFLAGS, WEIR_MSG_F_COPY,
	    WEIR_VTYPE_KEY, knull ? NULL : key, knull ? (size_t)0 : klen, WEIR_VTYPE_VALUE, vnull ? NULL : val,
	    vnull ? (size_t)0 : vlen, WEIR_VTYPE_HEADERS, h, WEIR_VTYPE_OPAQUE, opaque, WEIR_VTYPE_END);
	if (err) rd_kafka_headers_destroy(h); // taken over only on success
	return err;
}
