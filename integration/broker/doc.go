// Package broker runs real Apache Kafka brokers (release 4.1.1, KRaft mode)
// as child processes for weir's integration tests.
//
// It owns everything about those processes: fetching the pinned release into
// the git-ignored cache through scripts/kafka.sh, writing each node's
// server.properties and log4j2 configuration, formatting KRaft storage
// (kafka.tools.StorageTool, --standalone for one node, --initial-controllers
// for a quorum), starting, killing, stopping and restarting nodes, and a few
// admin calls (topics, partitions, finding a transaction coordinator) made
// through franz-go's kgo/kmsg. Every node is a combined broker+controller
// bound to 127.0.0.1; node i has node.id i, so broker indexes and Kafka node
// IDs are the same numbers. Each node's log is written to
// <Dir>/node-<i>/server.log, never to the test's output.
//
// Callers, directly:
//
//  1. Have a JDK 17+ (java) on PATH, and Maven (mvn) the first time, when the
//     release is fetched from Maven Central into .cache/kafka/4.1.1/libs under
//     the repository root (or $WEIR_KAFKA_CACHE/4.1.1/libs).
//  2. Call Start with a fresh Options.Dir they own. Start returns once every
//     broker is registered and a topic create/delete round trip works, or an
//     error that says why, with the tail of the broker logs.
//  3. Create the topics they need with CreateTopic (brokers never
//     auto-create topics) and connect clients to Bootstrap().
//  4. Call Stop when done, even after an error from another method; it is
//     idempotent. The brokers also die with the test process (Pdeathsig).
//
// Test packages:
//
//  1. Call Main from TestMain: func TestMain(m *testing.M) { os.Exit(broker.Main(m, 1)) }.
//     A broker that cannot start fails the package; it is never a skip.
//  2. Use Topic(t, partitions) for a fresh topic on the shared cluster, and
//     Shared() for its bootstrap address and admin calls.
//  3. Use ForTest(t, 3) for a private cluster in tests that kill, stop or
//     restart brokers; it is stopped in t.Cleanup.
//  4. Run such packages one at a time (go test -p 1): each broker is a JVM
//     of up to 768 MiB heap.
//  5. Use SecuredForTest(t, 1) (or StartSecured, Options.Secured) for a
//     cluster whose nodes also have a SASL_SSL listener with SCRAM-SHA-512
//     authentication (no ACLs): connect to SecuredBootstrap() with
//     ClientProperties(). The CA, the broker certificate (SAN IP:127.0.0.1,
//     DNS:localhost) and its PKCS12 keystore and truststore are made with the
//     JDK's keytool under the cluster's data directory; the users BrokerUser
//     and SecuredUser get random passwords (Password) at format time
//     (StorageTool format --add-scram). UntrustedCAPath is a CA that signed
//     nothing, for tests of a client that must refuse the broker.
package broker
