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
// the bytes of buf used in *used.
int weir_consume(rd_kafka_queue_t *rkq, int timeout_ms, weir_rec *recs, int max, char *buf, int64_t cap,
                        int64_t *used, int64_t *need, rd_kafka_event_t **pending, const rd_kafka_message_t **pending_msg) {
	int n = 0;
	*used = 0;
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
			r->partition = m->partition;
			r->offset = m->offset;
			if (m->err) {
				r->err = m->err;
				if (m->err == WEIR_ERR_PARTITION_EOF) {
					r->kind = WEIR_EOF;
				} else {
					r->kind = WEIR_ERR;
					if (!copy_str(r, rd_kafka_err2str(m->err), buf, cap, used)) {
						*pending = ev;
						*pending_msg = m;
						if (n == 0) { *need = 1024; return -1; }
						break;
					}
				}
			} else {
				int64_t k = m->key ? (int64_t)m->key_len : 0;
				int64_t v = m->payload ? (int64_t)m->len : 0;
				if (*used + k + v > cap) {
					*pending = ev;
					*pending_msg = m;
					if (n == 0) { *need = k + v; return -1; }
					break;
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

// weir_produce produces n records in order to rkt (partition -1: the
// topic's partitioner), copying them: record i's key is buf[koff[i]:]
// (klen[i] bytes; -1: null), its value follows it (vlen[i] bytes; -1:
// null). It stops at the first record librdkafka refuses, returns how many
// it produced and the refusal's error code in *err.
int weir_produce(rd_kafka_topic_t *rkt, int32_t partition, char *buf, int64_t *koff, int32_t *klen, int32_t *vlen,
                        int n, int *err) {
	*err = 0;
	for (int i = 0; i < n; i++) {
		char *k = klen[i] < 0 ? NULL : buf + koff[i];
		char *v = buf + koff[i] + (klen[i] < 0 ? 0 : klen[i]);
		size_t kl = klen[i] < 0 ? 0 : (size_t)klen[i];
		size_t vl = vlen[i] < 0 ? 0 : (size_t)vlen[i];
		if (vlen[i] < 0) v = NULL;
		if (rd_kafka_produce(rkt, partition, WEIR_MSG_F_COPY, v, vl, k, kl, NULL) == -1) {
			*err = rd_kafka_last_error();
			return i;
		}
	}
	return n;
}
