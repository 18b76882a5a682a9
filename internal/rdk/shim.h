#ifndef WEIR_RDK_SHIM_H
#define WEIR_RDK_SHIM_H

// librdkafka's public ABI (rdkafka.h), written out: the header is not on
// this package's include path. The library is the one confluent-kafka-go
// links in.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_queue_s rd_kafka_queue_t;
typedef struct rd_kafka_op_s rd_kafka_event_t;
typedef struct rd_kafka_topic_s rd_kafka_topic_t;
typedef struct rd_kafka_topic_conf_s rd_kafka_topic_conf_t;
typedef int rd_kafka_resp_err_t;
typedef int rd_kafka_event_type_t;
typedef int rd_kafka_timestamp_type_t;

typedef struct rd_kafka_message_s {
	rd_kafka_resp_err_t err;
	rd_kafka_topic_t *rkt;
	int32_t partition;
	void *payload;
	size_t len;
	void *key;
	size_t key_len;
	int64_t offset;
	void *_private;
} rd_kafka_message_t;

typedef struct rd_kafka_topic_partition_s {
	char *topic;
	int32_t partition;
	int64_t offset;
	void *metadata;
	size_t metadata_size;
	void *opaque;
	rd_kafka_resp_err_t err;
	void *_private;
} rd_kafka_topic_partition_t;

typedef struct rd_kafka_topic_partition_list_s {
	int cnt;
	int size;
	rd_kafka_topic_partition_t *elems;
} rd_kafka_topic_partition_list_t;

const char *rd_kafka_name(const rd_kafka_t *rk);
rd_kafka_queue_t *rd_kafka_queue_get_consumer(rd_kafka_t *rk);
void rd_kafka_queue_destroy(rd_kafka_queue_t *rkqu);
rd_kafka_event_t *rd_kafka_queue_poll(rd_kafka_queue_t *rkqu, int timeout_ms);
void rd_kafka_queue_yield(rd_kafka_queue_t *rkqu);
rd_kafka_event_type_t rd_kafka_event_type(const rd_kafka_event_t *rkev);
const rd_kafka_message_t *rd_kafka_event_message_next(rd_kafka_event_t *rkev);
void rd_kafka_event_destroy(rd_kafka_event_t *rkev);
rd_kafka_resp_err_t rd_kafka_event_error(rd_kafka_event_t *rkev);
const char *rd_kafka_event_error_string(rd_kafka_event_t *rkev);
int rd_kafka_event_error_is_fatal(rd_kafka_event_t *rkev);
rd_kafka_topic_partition_list_t *rd_kafka_event_topic_partition_list(rd_kafka_event_t *rkev);
rd_kafka_topic_partition_t *rd_kafka_event_topic_partition(rd_kafka_event_t *rkev);
void rd_kafka_topic_partition_destroy(rd_kafka_topic_partition_t *rktpar);
int64_t rd_kafka_message_timestamp(const rd_kafka_message_t *rkmessage, rd_kafka_timestamp_type_t *tstype);
const char *rd_kafka_err2str(rd_kafka_resp_err_t err);
rd_kafka_topic_t *rd_kafka_topic_new(rd_kafka_t *rk, const char *topic, rd_kafka_topic_conf_t *conf);
void rd_kafka_topic_destroy(rd_kafka_topic_t *rkt);
int rd_kafka_produce(rd_kafka_topic_t *rkt, int32_t partition, int msgflags, void *payload, size_t len,
                     const void *key, size_t keylen, void *msg_opaque);
int rd_kafka_produce_batch(rd_kafka_topic_t *rkt, int32_t partition, int msgflags, rd_kafka_message_t *rkmessages,
                           int message_cnt);
rd_kafka_resp_err_t rd_kafka_last_error(void);
rd_kafka_queue_t *rd_kafka_queue_new(rd_kafka_t *rk);
rd_kafka_queue_t *rd_kafka_queue_get_partition(rd_kafka_t *rk, const char *topic, int32_t partition);
void rd_kafka_queue_forward(rd_kafka_queue_t *src, rd_kafka_queue_t *dst);
ssize_t rd_kafka_consume_batch_queue(rd_kafka_queue_t *rkqu, int timeout_ms, rd_kafka_message_t **rkmessages,
                                     size_t rkmessages_size);
void rd_kafka_message_destroy(rd_kafka_message_t *rkmessage);
const char *rd_kafka_message_errstr(const rd_kafka_message_t *rkmessage);
void rd_kafka_queue_cb_event_enable(rd_kafka_queue_t *rkqu, void (*event_cb)(rd_kafka_t *rk, void *qev_opaque),
                                    void *qev_opaque);

// The producer of our own (producer.go).
typedef struct rd_kafka_conf_s rd_kafka_conf_t;
typedef struct rd_kafka_headers_s rd_kafka_headers_t;
typedef int rd_kafka_conf_res_t;
rd_kafka_conf_t *rd_kafka_conf_new(void);
void rd_kafka_conf_destroy(rd_kafka_conf_t *conf);
rd_kafka_conf_res_t rd_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
                                      size_t errstr_size);
void rd_kafka_conf_set_events(rd_kafka_conf_t *conf, int events);
rd_kafka_t *rd_kafka_new(int type, rd_kafka_conf_t *conf, char *errstr, size_t errstr_size);
void rd_kafka_destroy(rd_kafka_t *rk);
rd_kafka_queue_t *rd_kafka_queue_get_main(rd_kafka_t *rk);
rd_kafka_resp_err_t rd_kafka_set_log_queue(rd_kafka_t *rk, rd_kafka_queue_t *rkqu);
rd_kafka_resp_err_t rd_kafka_flush(rd_kafka_t *rk, int timeout_ms);
int rd_kafka_outq_len(rd_kafka_t *rk);
const char *rd_kafka_topic_name(const rd_kafka_topic_t *rkt);
int rd_kafka_event_log(rd_kafka_event_t *rkev, const char **fac, const char **str, int *level);
rd_kafka_headers_t *rd_kafka_headers_new(size_t initial_count);
void rd_kafka_headers_destroy(rd_kafka_headers_t *hdrs);
rd_kafka_resp_err_t rd_kafka_header_add(rd_kafka_headers_t *hdrs, const char *name, ssize_t name_size,
                                        const void *value, ssize_t value_size);
rd_kafka_resp_err_t rd_kafka_producev(rd_kafka_t *rk, ...);

// Transactions (txn.go).
typedef struct rd_kafka_error_s rd_kafka_error_t;
rd_kafka_error_t *rd_kafka_init_transactions(rd_kafka_t *rk, int timeout_ms);
rd_kafka_error_t *rd_kafka_begin_transaction(rd_kafka_t *rk);
rd_kafka_error_t *rd_kafka_commit_transaction(rd_kafka_t *rk, int timeout_ms);
rd_kafka_error_t *rd_kafka_abort_transaction(rd_kafka_t *rk, int timeout_ms);
rd_kafka_resp_err_t rd_kafka_error_code(const rd_kafka_error_t *error);
const char *rd_kafka_error_string(const rd_kafka_error_t *error);
int rd_kafka_error_is_fatal(const rd_kafka_error_t *error);
int rd_kafka_error_is_retriable(const rd_kafka_error_t *error);
int rd_kafka_error_txn_requires_abort(const rd_kafka_error_t *error);
void rd_kafka_error_destroy(rd_kafka_error_t *error);
rd_kafka_resp_err_t rd_kafka_purge(rd_kafka_t *rk, int purge_flags);
rd_kafka_resp_err_t rd_kafka_fatal_error(rd_kafka_t *rk, char *errstr, size_t errstr_size);
#define WEIR_PURGE_F_QUEUE 0x1
#define WEIR_PURGE_F_INFLIGHT 0x2
#define WEIR_PURGE_F_NON_BLOCKING 0x4

#define WEIR_EVENT_DR 0x1
#define WEIR_EVENT_FETCH 0x2
#define WEIR_EVENT_LOG 0x4
#define WEIR_EVENT_ERROR 0x8
#define WEIR_EVENT_OFFSET_COMMIT 0x20
#define WEIR_ERR_PARTITION_EOF (-191)
#define WEIR_MSG_F_COPY 0x2
#define WEIR_CONF_OK 0
#define WEIR_RD_KAFKA_PRODUCER 0
// rd_kafka_vtype_t of rd_kafka_producev's arguments.
#define WEIR_VTYPE_END 0
#define WEIR_VTYPE_RKT 2
#define WEIR_VTYPE_PARTITION 3
#define WEIR_VTYPE_VALUE 4
#define WEIR_VTYPE_KEY 5
#define WEIR_VTYPE_OPAQUE 6
#define WEIR_VTYPE_MSGFLAGS 7
#define WEIR_VTYPE_HEADERS 10

// What one entry of a batch is.
#define WEIR_REC 0
#define WEIR_EOF 1
#define WEIR_ERR 2
#define WEIR_COMMIT 3

typedef struct {
	int64_t offset;
	int64_t ts;      // milliseconds; REC only
	int64_t key_off; // into the buffer; -1: null key. ERR, COMMIT: the message
	int64_t val_off; // into the buffer; -1: null value
	int32_t key_len;
	int32_t val_len;
	int32_t partition;
	int32_t kind;
	int32_t tstype; // REC: 0 none, 1 create time, 2 log append time
	int32_t err;    // ERR, COMMIT: the error code (COMMIT: 0 when it succeeded)
	int32_t fatal;  // ERR
	int32_t pad;
} weir_rec;


int weir_consume(rd_kafka_queue_t *rkq, int timeout_ms, weir_rec *recs, int max, char *buf, int64_t cap,
                 int64_t *used, int64_t *need, rd_kafka_event_t **pending,
                 const rd_kafka_message_t **pending_msg);

// Messages taken from a fetch queue and not yet handed over: msgs[off:n]
// (cap slots, C memory).
typedef struct {
	rd_kafka_message_t **msgs;
	int cap;
	int off;
	int n;
} weir_held;

int weir_consume_msgs(rd_kafka_queue_t *rkq, int timeout_ms, weir_held *h, weir_rec *recs, int max, char *buf,
                      int64_t cap, int64_t *used, int64_t *need);
void weir_held_free(weir_held *h);
void weir_wake_on(rd_kafka_queue_t *consumerq, rd_kafka_queue_t *fetchq);
#define WEIR_PRODUCE_BATCH 256
int weir_produce(rd_kafka_topic_t *rkt, int32_t partition, char *buf, int64_t *koff, int32_t *klen, int32_t *vlen,
                 int n, void *opaque, int *err);

// What one note of weir_serve is.
#define WEIR_NOTE_LOG 0
#define WEIR_NOTE_ERR 1
#define WEIR_NOTE_FAILED 2

typedef struct {
	int64_t text_off; // into the buffer: LOG, ERR: the message; FAILED: the error string
	int64_t tag_off;  // LOG: the facility; FAILED: the topic
	int32_t text_len;
	int32_t tag_len;
	int32_t kind;
	int32_t level; // LOG: syslog level
	int32_t err;   // ERR, FAILED: the error code
	int32_t fatal; // ERR
} weir_note;

// What weir_serve counts: the records delivered that were produced with
// a non-NULL opaque, the others delivered, and those that failed.
typedef struct {
	int64_t tagged;
	int64_t untagged;
	int64_t failed;
} weir_counts;

int weir_serve(rd_kafka_queue_t *rkq, int timeout_ms, int max_events, weir_note *notes, int max_notes, char *buf,
               int64_t cap, weir_counts *counts);
int weir_produce_headers(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int32_t partition, void *key, size_t klen, int knull,
                         void *val, size_t vlen, int vnull, char *hbuf, int32_t *hkeylen, int32_t *hvallen, int nh,
                         void *opaque);

#endif
