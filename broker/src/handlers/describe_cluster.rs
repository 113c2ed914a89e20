//! DescribeCluster: the cluster id, controller and brokers.

use kafka_protocol::{
    messages::{
        describe_cluster_response::DescribeClusterBroker, BrokerId, DescribeClusterRequest,
        DescribeClusterResponse,
    },
    protocol::StrBytes,
    ResponseError,
};

use super::{text, Ctx, OPS_NOT_REQUESTED};

/// Kafka's endpoint types (KIP-919): brokers, or controllers.
const ENDPOINT_BROKERS: i8 = 1;

/// Describes this single-node cluster.
pub fn handle(ctx: &Ctx<'_>, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let broker = ctx.broker;
    let resp = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(broker.cluster_id()))
        .with_endpoint_type(req.endpoint_type)
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_cluster_authorized_operations(OPS_NOT_REQUESTED);
    if ctx.version >= 1 && req.endpoint_type != ENDPOINT_BROKERS {
        return resp
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(text(
                "this broker runs its controller in-process and has no controller endpoint",
            ));
    }
    let l = &broker.config.advertised[0];
    resp.with_brokers(vec![DescribeClusterBroker::default()
        .with_broker_id(BrokerId(broker.config.node_id))
        .with_host(StrBytes::from_string(l.host.clone()))
        .with_port(i32::from(l.port))
        .with_rack(broker.config.rack.clone().map(StrBytes::from_string))])
}
