package dev.weir.bench;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.state.CheckpointListener;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.KafkaSourceBuilder;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.runtime.state.FunctionInitializationContext;
import org.apache.flink.runtime.state.FunctionSnapshotContext;
import org.apache.flink.streaming.api.CheckpointingMode;
import org.apache.flink.streaming.api.checkpoint.CheckpointedFunction;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.co.ProcessJoinFunction;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.EventTimeSessionWindows;
import org.apache.flink.streaming.api.windowing.assigners.SlidingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.assigners.WindowAssigner;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.producer.ProducerRecord;

/**
 * The Flink peer of weir's benchmark harness: weir's window jobs, an
 * interval join, a filter/map/keyBy/process pipeline (and a passthrough)
 * written with the DataStream API, run in one local JVM.
 *
 * <p>Arguments are key=value pairs: brokers, topic, out, group, mode
 * (window|sliding|session|interval-join|dataflow|passthrough), delivery
 * (exactly-once|at-least-once), parallelism, checkpoint-ms, checkpoint-dir
 * (file checkpoint storage; without it the JobManager's, limited to 5 MB of
 * state), window-ms, slide-ms, gap-ms, lower-ms, upper-ms, ooo-ms,
 * txn-prefix.
 * State is on the heap (hashmap backend); a failure ends the job (no
 * restarts). The source reads the topic
 * from its earliest offsets up to the end offsets it finds at start
 * (bounded; unbounded=true reads on until killed), read_committed;
 * restore=PATH starts from a retained checkpoint (chk-N directory). The window mode keys the JSON events
 * {"user","ts","amount",...} by user, assigns event time from ts with a
 * bounded-out-of-orderness watermark, counts and sums amount in tumbling
 * windows, and writes {"key","window_start","window_end","count","sum"}
 * with the user as record key; sliding (SlidingEventTimeWindows of window-ms
 * every slide-ms) and session (EventTimeSessionWindows with gap-ms) write
 * the same records (a session's window_end is its last record's ts +
 * gap-ms). The interval-join mode reads the topic once, splits it by seq
 * parity (left: even, right: odd), keys both sides by user, joins them with
 * intervalJoin(...).between(lower-ms, upper-ms) and writes
 * {"user","l","r","lt","rt"} (left and right seq and ts) with the user as
 * record key. Every event-time mode uses the same watermark strategy
 * (bounded out-of-orderness ooo-ms, per Kafka partition). The dataflow mode
 * (no watermarks) keeps the events with amount > 50, maps each to its user,
 * seq and doubled amount, keys them by user and runs a KeyedProcessFunction
 * whose ValueState holds the user's running count and sum, writing
 * {"user","seq","count","sum"} for every event kept, with the user as
 * record key. When the job ends, one line
 * "FLINKBENCH {json}" on stdout gives the figures the harness reads.
 */
public final class FlinkBench {
  private FlinkBench() {}

  // The job runs in this JVM (a MiniCluster), so its operators report
  // through statics.
  static final AtomicLong FIRST_RECORD_MS = new AtomicLong(Long.MAX_VALUE);
  static final AtomicLong RECORDS_IN = new AtomicLong();
  static final AtomicLong RESULTS_OUT = new AtomicLong();
  static final Map<Long, Long> SNAPSHOT_NS = new ConcurrentHashMap<>();
  static final Map<Long, Long> CHECKPOINT_NS = new ConcurrentHashMap<>();
  static final AtomicLong CPU_MS_AT_FIRST = new AtomicLong(-1);
  static final AtomicLong LAST_RECORD_MS = new AtomicLong();

  /** CPU time (user + system) of this JVM process, in ms. */
  static long cpuMs() {
    java.lang.management.OperatingSystemMXBean os =
        java.lang.management.ManagementFactory.getOperatingSystemMXBean();
    if (os instanceof com.sun.management.OperatingSystemMXBean) {
      return ((com.sun.management.OperatingSystemMXBean) os).getProcessCpuTime() / 1_000_000;
    }
    return 0;
  }

  /** VmHWM of this process from /proc/self/status, in KiB, or 0. */
  static long peakRssKiB() {
    try {
      for (String line : java.nio.file.Files.readAllLines(java.nio.file.Path.of("/proc/self/status"))) {
        if (line.startsWith("VmHWM:")) {
          return Long.parseLong(line.substring(6).trim().split("\\s+")[0]);
        }
      }
    } catch (IOException | RuntimeException e) {
      return 0;
    }
    return 0;
  }

  public static void main(String[] args) throws Exception {
    long startMs = System.currentTimeMillis();
    Map<String, String> a = new HashMap<>();
    for (String s : args) {
      int i = s.indexOf('=');
      if (i <= 0) {
        System.err.println("flinkbench: argument " + s + ": want key=value");
        System.exit(2);
      }
      a.put(s.substring(0, i), s.substring(i + 1));
    }
    String brokers = need(a, "brokers");
    String topic = need(a, "topic");
    String out = need(a, "out");
    String group = a.getOrDefault("group", "flinkbench-" + topic);
    String mode = a.getOrDefault("mode", "window");
    String delivery = a.getOrDefault("delivery", "exactly-once");
    int parallelism = Integer.parseInt(a.getOrDefault("parallelism", "1"));
    long checkpointMs = Long.parseLong(a.getOrDefault("checkpoint-ms", "1000"));
    long windowMs = Long.parseLong(a.getOrDefault("window-ms", "10000"));
    long slideMs = Long.parseLong(a.getOrDefault("slide-ms", "5000"));
    long gapMs = Long.parseLong(a.getOrDefault("gap-ms", "1000"));
    long lowerMs = Long.parseLong(a.getOrDefault("lower-ms", "-200"));
    long upperMs = Long.parseLong(a.getOrDefault("upper-ms", "300"));
    long oooMs = Long.parseLong(a.getOrDefault("ooo-ms", "0"));
    String txnPrefix = a.getOrDefault("txn-prefix", "flinkbench-" + out);
    String checkpointDir = a.get("checkpoint-dir");
    // unbounded=true: read on past the end offsets at start until killed (the
    // harness's latency and recovery runs). restore=PATH: start from that
    // retained checkpoint (a chk-N directory), as after a crash.
    boolean unbounded = Boolean.parseBoolean(a.getOrDefault("unbounded", "false"));
    String restore = a.get("restore");

    Configuration conf = new Configuration();
    conf.setString("rest.bind-address", "127.0.0.1");
    conf.setString("rest.address", "127.0.0.1");
    conf.setString("jobmanager.rpc.address", "127.0.0.1");
    conf.setString("jobmanager.bind-host", "127.0.0.1");
    conf.setString("taskmanager.host", "127.0.0.1");
    conf.setString("taskmanager.bind-host", "127.0.0.1");
    // A failure ends the run (the harness reports it) instead of a restart loop.
    conf.setString("restart-strategy.type", "none");
    // State on the heap (hashmap backend), checkpoints written to files:
    // the default JobManager storage refuses state over 5 MB.
    conf.setString("state.backend.type", "hashmap");
    if (checkpointDir != null && !checkpointDir.isEmpty()) {
      conf.setString("state.checkpoints.dir", java.nio.file.Path.of(checkpointDir).toUri().toString());
      conf.setString("execution.checkpointing.storage", "filesystem");
      // Keep the latest checkpoint when the JVM dies, so a new JVM can
      // restore from it (the harness's recovery run).
      conf.setString("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION");
      conf.setString("execution.checkpointing.num-retained", "2");
    }
    if (restore != null && !restore.isEmpty()) {
      conf.setString("execution.savepoint.path", java.nio.file.Path.of(restore).toUri().toString());
    }
    StreamExecutionEnvironment env =
        StreamExecutionEnvironment.createLocalEnvironment(parallelism, conf);
    if (checkpointMs > 0) {
      env.enableCheckpointing(checkpointMs, CheckpointingMode.EXACTLY_ONCE);
    }
    DeliveryGuarantee guarantee;
    switch (delivery) {
      case "exactly-once":
        guarantee = DeliveryGuarantee.EXACTLY_ONCE;
        break;
      case "at-least-once":
        guarantee = DeliveryGuarantee.AT_LEAST_ONCE;
        break;
      default:
        System.err.println("flinkbench: delivery " + delivery + ": want exactly-once or at-least-once");
        System.exit(2);
        return;
    }

    KafkaSink<byte[][]> sink =
        KafkaSink.<byte[][]>builder()
            .setBootstrapServers(brokers)
            .setRecordSerializer(new KeyValueSerializer(out))
            .setDeliveryGuarantee(guarantee)
            .setTransactionalIdPrefix(txnPrefix)
            .setProperty("transaction.timeout.ms", "600000")
            .setProperty("linger.ms", "5")
            .build();

    switch (mode) {
      case "window":
      case "sliding":
      case "session":
        {
          WindowAssigner<Object, TimeWindow> assigner;
          if (mode.equals("window")) {
            assigner = TumblingEventTimeWindows.of(Duration.ofMillis(windowMs));
          } else if (mode.equals("sliding")) {
            assigner = SlidingEventTimeWindows.of(Duration.ofMillis(windowMs), Duration.ofMillis(slideMs));
          } else {
            assigner = EventTimeSessionWindows.withGap(Duration.ofMillis(gapMs));
          }
          events(env, brokers, topic, group, unbounded, oooMs)
              .keyBy(e -> e.user)
              .window(assigner)
              .aggregate(new CountSum(), new ToResult())
              .returns(TypeInformation.of(byte[][].class))
              .sinkTo(sink);
          break;
        }
      case "interval-join":
        {
          DataStream<Event> events = events(env, brokers, topic, group, unbounded, oooMs);
          events
              .filter(e -> e.seq % 2 == 0)
              .keyBy(e -> e.user)
              .intervalJoin(events.filter(e -> e.seq % 2 != 0).keyBy(e -> e.user))
              .between(Duration.ofMillis(lowerMs), Duration.ofMillis(upperMs))
              .process(new ToPair())
              .returns(TypeInformation.of(byte[][].class))
              .sinkTo(sink);
          break;
        }
      case "dataflow":
        {
          eventsNoWatermarks(env, brokers, topic, group, unbounded)
              .filter(e -> e.amount > DATAFLOW_MIN_AMOUNT)
              .map(e -> new Doubled(e.user, e.seq, 2 * e.amount))
              .returns(Doubled.class)
              .keyBy(d -> d.user)
              .process(new Totals())
              .returns(TypeInformation.of(byte[][].class))
              .sinkTo(sink);
          break;
        }
      case "passthrough":
        {
          KafkaSourceBuilder<byte[][]> b =
              KafkaSource.<byte[][]>builder()
                  .setBootstrapServers(brokers)
                  .setTopics(topic)
                  .setGroupId(group)
                  .setStartingOffsets(OffsetsInitializer.earliest())
                  .setProperty("isolation.level", "read_committed")
                  .setDeserializer(new RawRecord());
          if (!unbounded) {
            b.setBounded(OffsetsInitializer.latest());
          }
          KafkaSource<byte[][]> source = b.build();
          env.fromSource(source, WatermarkStrategy.noWatermarks(), "kafka")
              .map(new Probe<byte[][]>())
              .returns(TypeInformation.of(byte[][].class))
              .sinkTo(sink);
          break;
        }
      default:
        System.err.println(
            "flinkbench: mode " + mode + ": want window, sliding, session, interval-join, dataflow or passthrough");
        System.exit(2);
        return;
    }

    JobExecutionResult r = env.execute("flinkbench-" + mode);
    long endMs = System.currentTimeMillis();
    List<Long> ckpt = new ArrayList<>();
    for (Map.Entry<Long, Long> e : CHECKPOINT_NS.entrySet()) {
      Long s = SNAPSHOT_NS.get(e.getKey());
      if (s != null) {
        ckpt.add((e.getValue() - s) / 1000);
      }
    }
    Collections.sort(ckpt);
    StringBuilder sb = new StringBuilder();
    sb.append("FLINKBENCH {\"start_ms\":").append(startMs)
        .append(",\"first_record_ms\":").append(FIRST_RECORD_MS.get())
        .append(",\"end_ms\":").append(endMs)
        .append(",\"last_record_ms\":").append(LAST_RECORD_MS.get())
        .append(",\"net_runtime_ms\":").append(r.getNetRuntime())
        .append(",\"records_in\":").append(RECORDS_IN.get())
        .append(",\"results_out\":").append(RESULTS_OUT.get())
        .append(",\"cpu_ms_at_first\":").append(Math.max(0, CPU_MS_AT_FIRST.get()))
        .append(",\"cpu_ms_at_end\":").append(cpuMs())
        .append(",\"peak_rss_kib\":").append(peakRssKiB())
        .append(",\"checkpoint_us\":[");
    for (int i = 0; i < ckpt.size(); i++) {
      if (i > 0) sb.append(',');
      sb.append(ckpt.get(i));
    }
    sb.append("]}");
    System.out.println(sb);
    System.out.flush();
    System.exit(0);
  }

  /**
   * The events of topic (earliest to the end offsets at start, or on until
   * killed when unbounded), read_committed, with event time from ts and a
   * bounded-out-of-orderness watermark of oooMs per partition, counted by
   * the probe.
   */
  private static DataStream<Event> events(
      StreamExecutionEnvironment env, String brokers, String topic, String group, boolean unbounded, long oooMs) {
    KafkaSourceBuilder<Event> b =
        KafkaSource.<Event>builder()
            .setBootstrapServers(brokers)
            .setTopics(topic)
            .setGroupId(group)
            .setStartingOffsets(OffsetsInitializer.earliest())
            .setProperty("isolation.level", "read_committed")
            .setValueOnlyDeserializer(new EventSchema());
    if (!unbounded) {
      b.setBounded(OffsetsInitializer.latest());
    }
    WatermarkStrategy<Event> ws =
        WatermarkStrategy.<Event>forBoundedOutOfOrderness(Duration.ofMillis(oooMs))
            .withTimestampAssigner((e, t) -> e.ts);
    return env.fromSource(b.build(), ws, "kafka").map(new Probe<Event>()).returns(Event.class);
  }

  /** The events of topic as events() reads them, without event time or watermarks. */
  private static DataStream<Event> eventsNoWatermarks(
      StreamExecutionEnvironment env, String brokers, String topic, String group, boolean unbounded) {
    KafkaSourceBuilder<Event> b =
        KafkaSource.<Event>builder()
            .setBootstrapServers(brokers)
            .setTopics(topic)
            .setGroupId(group)
            .setStartingOffsets(OffsetsInitializer.earliest())
            .setProperty("isolation.level", "read_committed")
            .setValueOnlyDeserializer(new EventSchema());
    if (!unbounded) {
      b.setBounded(OffsetsInitializer.latest());
    }
    return env.fromSource(b.build(), WatermarkStrategy.noWatermarks(), "kafka")
        .map(new Probe<Event>())
        .returns(Event.class);
  }

  private static String need(Map<String, String> a, String k) {
    String v = a.get(k);
    if (v == null || v.isEmpty()) {
      System.err.println("flinkbench: missing argument " + k + "=...");
      System.exit(2);
    }
    return v;
  }

  /** One input event: a Flink POJO (no Kryo). */
  public static final class Event {
    public String user;
    public long ts;
    public long amount;
    public long seq;

    public Event() {}
  }

  /** Reads the fields the job needs from an event's JSON with Jackson's streaming parser. */
  static final class EventSchema implements DeserializationSchema<Event> {
    private transient JsonFactory factory;

    @Override
    public Event deserialize(byte[] message) throws IOException {
      if (factory == null) {
        factory = new JsonFactory();
      }
      Event e = new Event();
      boolean hasUser = false, hasTs = false;
      try (JsonParser p = factory.createParser(message)) {
        if (p.nextToken() != JsonToken.START_OBJECT) {
          throw new IOException("flinkbench: record is not a JSON object");
        }
        while (p.nextToken() == JsonToken.FIELD_NAME) {
          String name = p.getCurrentName();
          JsonToken t = p.nextToken();
          switch (name) {
            case "user":
              e.user = t == JsonToken.VALUE_STRING ? p.getText() : p.getValueAsString();
              hasUser = true;
              break;
            case "ts":
              e.ts = p.getLongValue();
              hasTs = true;
              break;
            case "amount":
              e.amount = p.getLongValue();
              break;
            case "seq":
              e.seq = p.getLongValue();
              break;
            default:
              p.skipChildren();
          }
        }
      }
      if (!hasUser || !hasTs) {
        throw new IOException("flinkbench: record lacks user or ts");
      }
      return e;
    }

    @Override
    public boolean isEndOfStream(Event e) {
      return false;
    }

    @Override
    public TypeInformation<Event> getProducedType() {
      return TypeInformation.of(Event.class);
    }
  }

  /** Passes a record's key and value through unchanged. */
  static final class RawRecord
      implements org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema<byte[][]> {
    @Override
    public void deserialize(
        org.apache.kafka.clients.consumer.ConsumerRecord<byte[], byte[]> record, Collector<byte[][]> out) {
      out.collect(new byte[][] {record.key(), record.value()});
    }

    @Override
    public TypeInformation<byte[][]> getProducedType() {
      return TypeInformation.of(byte[][].class);
    }
  }

  /**
   * Counts records and notes when the first one arrived, and when each
   * checkpoint passed the source (snapshotState) and completed
   * (notifyCheckpointComplete). Chained to the source: no serialization.
   */
  static final class Probe<T> extends RichMapFunction<T, T>
      implements CheckpointedFunction, CheckpointListener {
    private transient boolean seen;
    private transient long count;
    private transient long last;

    @Override
    public void close() {
      LAST_RECORD_MS.accumulateAndGet(last, Math::max);
    }

    @Override
    public T map(T v) {
      // The time of every 1024th record: the last one read is known to
      // within 1024 records.
      if ((++count & 1023) == 1) {
        last = System.currentTimeMillis();
      }
      if (!seen) {
        seen = true;
        long now = System.currentTimeMillis();
        FIRST_RECORD_MS.accumulateAndGet(now, Math::min);
        CPU_MS_AT_FIRST.compareAndSet(-1, cpuMs());
      }
      RECORDS_IN.incrementAndGet();
      return v;

    }

    @Override
    public void snapshotState(FunctionSnapshotContext ctx) {
      SNAPSHOT_NS.putIfAbsent(ctx.getCheckpointId(), System.nanoTime());
    }

    @Override
    public void initializeState(FunctionInitializationContext ctx) {}

    @Override
    public void notifyCheckpointComplete(long id) {
      CHECKPOINT_NS.putIfAbsent(id, System.nanoTime());
    }
  }

  /** Count and sum of amount: acc[0] count, acc[1] sum. */
  static final class CountSum implements AggregateFunction<Event, long[], long[]> {
    @Override
    public long[] createAccumulator() {
      return new long[2];
    }

    @Override
    public long[] add(Event e, long[] acc) {
      acc[0]++;
      acc[1] += e.amount;
      return acc;
    }

    @Override
    public long[] getResult(long[] acc) {
      return acc;
    }

    @Override
    public long[] merge(long[] x, long[] y) {
      x[0] += y[0];
      x[1] += y[1];
      return x;
    }
  }

  /** Formats one window result as weir does; the key goes along as the record key. */
  static final class ToResult extends ProcessWindowFunction<long[], byte[][], String, TimeWindow> {
    @Override
    public void process(String key, Context ctx, Iterable<long[]> in, Collector<byte[][]> out) {
      long[] acc = in.iterator().next();
      StringBuilder sb = new StringBuilder(96);
      sb.append("{\"key\":\"").append(key).append("\",\"window_start\":").append(ctx.window().getStart())
          .append(",\"window_end\":").append(ctx.window().getEnd())
          .append(",\"count\":").append(acc[0])
          .append(",\"sum\":").append(acc[1]).append('}');
      out.collect(
          new byte[][] {
            key.getBytes(StandardCharsets.UTF_8), sb.toString().getBytes(StandardCharsets.UTF_8)
          });
    }
  }

  /** Formats one joined pair as weir's bench job does; the user goes along as the record key. */
  static final class ToPair extends ProcessJoinFunction<Event, Event, byte[][]> {
    @Override
    public void processElement(Event l, Event r, Context ctx, Collector<byte[][]> out) {
      StringBuilder sb = new StringBuilder(96);
      sb.append("{\"user\":\"").append(l.user).append("\",\"l\":").append(l.seq)
          .append(",\"r\":").append(r.seq)
          .append(",\"lt\":").append(l.ts)
          .append(",\"rt\":").append(r.ts).append('}');
      out.collect(
          new byte[][] {
            l.user.getBytes(StandardCharsets.UTF_8), sb.toString().getBytes(StandardCharsets.UTF_8)
          });
    }
  }

  /** The dataflow mode's filter: an event passes when its amount is above it (bench's dataflowMinAmount). */
  static final long DATAFLOW_MIN_AMOUNT = 50;

  /** What the dataflow mode's map makes of an event it kept: a Flink POJO (no Kryo). */
  public static final class Doubled {
    public String user;
    public long seq;
    public long value;

    public Doubled() {}

    Doubled(String user, long seq, long value) {
      this.user = user;
      this.seq = seq;
      this.value = value;
    }
  }

  /** The state of Totals: a user's running count and sum (a Flink POJO). */
  public static final class CountSumState {
    public long count;
    public long sum;

    public CountSumState() {}
  }

  /**
   * The dataflow mode's keyed process function: a ValueState per user holds
   * the running count and sum of the doubled amounts, and every value emits
   * them as weir's bench job does; the user goes along as the record key.
   */
  static final class Totals extends KeyedProcessFunction<String, Doubled, byte[][]> {
    private transient ValueState<CountSumState> acc;

    @Override
    public void open(Configuration parameters) {
      acc = getRuntimeContext().getState(new ValueStateDescriptor<>("count-sum", CountSumState.class));
    }

    @Override
    public void processElement(Doubled d, Context ctx, Collector<byte[][]> out) throws IOException {
      CountSumState cs = acc.value();
      if (cs == null) {
        cs = new CountSumState();
      }
      cs.count++;
      cs.sum += d.value;
      acc.update(cs);
      StringBuilder sb = new StringBuilder(80);
      sb.append("{\"user\":\"").append(d.user).append("\",\"seq\":").append(d.seq)
          .append(",\"count\":").append(cs.count)
          .append(",\"sum\":").append(cs.sum).append('}');
      out.collect(
          new byte[][] {
            d.user.getBytes(StandardCharsets.UTF_8), sb.toString().getBytes(StandardCharsets.UTF_8)
          });
    }
  }

  /** Writes {key, value} pairs to the output topic. */
  static final class KeyValueSerializer implements KafkaRecordSerializationSchema<byte[][]> {
    private final String topic;

    KeyValueSerializer(String topic) {
      this.topic = topic;
    }

    @Override
    public ProducerRecord<byte[], byte[]> serialize(byte[][] kv, KafkaSinkContext ctx, Long timestamp) {
      RESULTS_OUT.incrementAndGet();
      return new ProducerRecord<>(topic, null, timestamp, kv[0], kv[1]);
    }
  }
}
