// Conversions between the internal Worker API messages and the engine's types.
#ifndef EXPERTMESH_WORKER_SERVICE_PROTO_CONVERT_H_
#define EXPERTMESH_WORKER_SERVICE_PROTO_CONVERT_H_

#include "expertmesh/internal/v1/worker.pb.h"
#include "worker/scheduler/request.h"
#include "worker/serving/engine_loop.h"
#include "worker/serving/request_sink.h"

namespace expertmesh::server {

namespace internal_api = ::expertmesh::internal::v1;

// SubmitRequest -> GenerationRequest. Proto3 cannot tell "unset" from 0, so top_p 0 and
// repetition_penalty 0 (both invalid values) mean "off" (1); every other value is passed on
// for the scheduler to validate. `priority` is not used yet: the scheduler is FCFS.
scheduler::GenerationRequest FromProto(const internal_api::SubmitRequest& request);

// One stream event's tokens and end as a SubmitResponse (the error, if any, is not part of it).
internal_api::SubmitResponse ToProto(const StreamEvent& event);

internal_api::StopReason ToProto(StreamEnd end);

// The load snapshot plus static facts as a LoadReport.
internal_api::LoadReport ToLoadReport(const LoadSnapshot& load, const EngineInfo& info, int tp,
                                      int ep);

}  // namespace expertmesh::server

#endif  // EXPERTMESH_WORKER_SERVICE_PROTO_CONVERT_H_
