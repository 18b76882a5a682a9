// Package kfakeresp builds the responses that tests hand back from a
// kfake cluster's ControlKey hooks in place of the broker's own.
package kfakeresp

import "github.com/twmb/franz-go/pkg/kmsg"

// ListOffsets answers every partition r asks for, each filled in by fill
// (which gets the partition asked and its answer, Partition already set).
func ListOffsets(r *kmsg.ListOffsetsRequest, fill func(rp *kmsg.ListOffsetsRequestTopicPartition, sp *kmsg.ListOffsetsResponseTopicPartition)) *kmsg.ListOffsetsResponse {
	resp := r.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range r.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		for i := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rt.Partitions[i].Partition
			fill(&rt.Partitions[i], &sp)
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
