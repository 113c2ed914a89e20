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

/// Describes the cluster from the metadata image: its id, the controller clients see, and
/// every registered broker (v2 reports fenced ones as such; earlier versions list the live), by
/// its address on the listener the request came in on.
pub fn handle(ctx: &Ctx<'_>, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let broker = ctx.broker;
    let image = broker.image();
    let resp = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(image.cluster_id.clone()))
        .with_endpoint_type(req.endpoint_type)
        .with_controller_id(BrokerId(super::metadata::controller_id(broker, &image)))
        .with_cluster_authorized_operations(OPS_NOT_REQUESTED);
    if ctx.version >= 1 && req.endpoint_type != ENDPOINT_BROKERS {
        return resp
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(text(
                "controllers are reached through the brokers, which forward admin requests; there is no controller endpoint for clients",
            ));
    }
    let include_fenced = ctx.version >= 2 && req.include_fenced_brokers;
    let brokers = image
        .brokers
        .values()
        .filter(|b| include_fenced || !b.fenced)
        .filter_map(|b| {
            let e = b.endpoint(ctx.listener)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(e.host.clone()))
                    .with_port(i32::from(e.port))
                    .with_rack(b.rack.clone().map(StrBytes::from_string))
                    .with_is_fenced(b.fenced),
            )
        })
        .collect();
    resp.with_brokers(brokers)
}
