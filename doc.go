// Package weir is a stream processing engine: it reads JSON records from
// Kafka, keys them, aggregates them in event-time tumbling windows and
// writes the results to Kafka. Operators are protoactor-go actors that pass
// records in batches under credit-based flow control.
//
// A program that embeds weir:
//
//  1. Describes the job with a JobSpec, or reads one from a job file with
//     LoadJobFile (the file is a thin layer over JobSpec).
//  2. Optionally checks the brokers and the source topic with CheckBrokers,
//     so a typo fails before anything starts.
//  3. Builds the job with NewJob, which fills in defaults and validates the
//     spec (errors name the job file key to fix).
//  4. Runs it with Job.Run(ctx). Cancelling ctx stops the job at once;
//     Job.Drain stops it with drain (every source reads to its current end,
//     every window fires, every result is acknowledged) and Run returns nil.
//  5. Reads progress at any time with Job.Stats.
//
// The engine binary, cmd/engine, is a thin layer over this package.
package weir
