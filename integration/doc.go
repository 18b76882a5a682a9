// Package integration runs weir's window job end to end against a real
// Apache Kafka broker (KRaft, started by the broker package) and checks its
// output with the verify package: the generated input is produced to a
// fresh topic, the job runs and is stopped with drain, and the results read
// back read_committed must equal the expected windows exactly once.
//
// The package holds only tests. It owns the tests of the job's Kafka
// behaviour that the in-process broker (kfake) cannot prove: backlog and
// live input on 1 and 4 partitions at parallelism 1 and 2, a malformed
// record failing the job with its topic, partition and offset, a missing
// source topic, and the latest and timestamp start modes. Its subfolders
// (broker, verify) are separate packages with their own owners.
//
// To run it:
//
//  1. Have a JDK 17+ on PATH (and Maven the first time; see package broker,
//     which fetches the pinned Kafka release into .cache/). A broker that
//     cannot start fails the package; no test is skipped.
//  2. Run one package at a time, the brokers are JVMs:
//     go test -p 1 -count=1 -v ./integration/
//  3. The generated tests print their seed; replay one with
//     go test -p 1 -count=1 -v ./integration/ -run '^TestWindowJob$' -seed N.
//
// Every topic a test creates is fresh and has retention.ms=-1: the
// generated events carry fixed event times in 2023, which the broker's
// time-based retention (7 days by default, first checked 30 s after the
// broker starts) would otherwise delete while a test runs.
package integration
