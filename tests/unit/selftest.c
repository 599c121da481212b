/*  mesh-selftest: runs the selftest of every common type and service module.

    Each selftest asserts.  The runner forks one child per selftest, so a
    failing assert is counted and the others still run; it exits non-zero if
    any failed.  With a name, runs only the tests whose name contains it.    */
#include "mesh_admin.h"
#include "mesh_audit.h"
#include "mesh_audit_file.h"
#include "mesh_audit_keyring.h"
#include "mesh_audit_query.h"
#include "mesh_audit_sample.h"
#include "mesh_audit_seal.h"
#include "mesh_audit_sealer.h"
#include "mesh_audit_store.h"
#include "mesh_audit_verify.h"
#include "mesh_audit_wal.h"
#include "mesh_buf.h"
#include "mesh_canon.h"
#include "mesh_completion.h"
#include "mesh_config.h"
#include "mesh_faq.h"
#include "mesh_faq_store.h"
#include "mesh_curve.h"
#include "mesh_discovery.h"
#include "mesh_dispatch.h"
#include "mesh_conn.h"
#include "mesh_http.h"
#include "mesh_id.h"
#include "mesh_jscan.h"
#include "mesh_log.h"
#include "mesh_loop.h"
#include "mesh_map.h"
#include "mesh_metrics.h"
#include "mesh_models.h"
#include "mesh_msg.h"
#include "mesh_peer.h"
#include "mesh_redis.h"
#include "mesh_resolver.h"
#include "mesh_settings.h"
#include "mesh_sse.h"
#include "mesh_wordchunk.h"
#include "mesh_wordfilter.h"
#include "mesh_ws.h"
#include "mesh_zmq.h"
#include "audit/audit.h"
#include "audit/audit_writer.h"
#include "ingress/ingress.h"
#include "cache/cache.h"
#include "cache/cache_flight.h"
#include "ingress/ingress_audit.h"
#include "ingress/ingress_audit_link.h"
#include "ingress/ingress_guard.h"
#include "ingress/ingress_filter.h"
#include "ingress/ingress_session.h"
#include "ingress/ingress_timer.h"
#include "mock/mock.h"
#include "mock/mock_render.h"
#include "connector/connector.h"
#include "ingress/ingress_validate.h"
#include "ctl/ctl.h"
#include "ctl/ctl_export.h"
#include "ctl/ctl_http.h"
#include "router/router.h"
#include "router/router_cache.h"
#include "router/router_connectors.h"
#include "router/router_filters.h"
#include "router/router_history.h"
#include "router/router_session.h"
#include "router/router_store.h"
#include "router/router_takeover.h"
#include "router/router_faq.h"
#include "router/router_keys.h"
#include "router/router_load.h"
#include "router/router_peers.h"
#include "router/router_lease.h"
#include "router/router_policy.h"
#include "router/router_quota.h"
#include "router/router_registry.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    const char *name;
    void (*fn) (bool verbose);
} selftest_t;

static const selftest_t s_tests [] = {
    { "mesh_buf",    mesh_buf_test },
    { "mesh_audit",  mesh_audit_test },
    { "mesh_audit_keyring", mesh_audit_keyring_test },
    { "mesh_audit_seal", mesh_audit_seal_test },
    { "mesh_audit_sealer", mesh_audit_sealer_test },
    { "mesh_audit_wal", mesh_audit_wal_test },
    { "mesh_audit_file", mesh_audit_file_test },
    { "mesh_audit_store", mesh_audit_store_test },
    { "mesh_audit_query", mesh_audit_query_test },
    { "mesh_audit_verify", mesh_audit_verify_test },
    { "mesh_audit_sample", mesh_audit_sample_test },
    { "mesh_admin",  mesh_admin_test },
    { "mesh_id",     mesh_id_test },
    { "mesh_jscan",  mesh_jscan_test },
    { "mesh_http",   mesh_http_test },
    { "mesh_completion", mesh_completion_test },
    { "mesh_canon",  mesh_canon_test },
    { "mesh_faq",    mesh_faq_test },
    { "mesh_faq_store", mesh_faq_store_test },
    { "mesh_config", mesh_config_test },
    { "mesh_curve",  mesh_curve_test },
    { "mesh_discovery", mesh_discovery_test },
    { "mesh_dispatch", mesh_dispatch_test },
    { "mesh_conn",   mesh_conn_test },
    { "mesh_loop",   mesh_loop_test },
    { "mesh_map",    mesh_map_test },
    { "mesh_metrics", mesh_metrics_test },
    { "mesh_models", mesh_models_test },
    { "mesh_msg",    mesh_msg_test },
    { "mesh_peer",   mesh_peer_test },
    { "mesh_redis",  mesh_redis_test },
    { "mesh_resolver", mesh_resolver_test },
    { "mesh_settings", mesh_settings_test },
    { "mesh_sse",    mesh_sse_test },
    { "mesh_ws",     mesh_ws_test },
    { "mesh_wordfilter", mesh_wordfilter_test },
    { "mesh_wordchunk", mesh_wordchunk_test },
    { "mesh_zmq",    mesh_zmq_test },
    { "mock_reply",  mock_reply_test },
    { "mock_replay", mock_replay_test },
    { "mock_render", mock_render_test },
    { "mock_ws",     mock_ws_test },
    { "mock_server", mock_server_test },
    { "mock_fault",  mock_fault_test },
    { "mock_seen",   mock_seen_test },
    { "connector_stream", connector_stream_test },
    { "connector_tee", connector_tee_test },
    { "connector_pool", connector_pool_test },
    { "connector_http", connector_http_test },
    { "connector_ws", connector_ws_test },
    { "ingress_validate", ingress_validate_test },
    { "ingress_audit", ingress_audit_test },
    { "ingress_audit_link", ingress_audit_link_test },
    { "ingress_guard", ingress_guard_test },
    { "ingress_filter", ingress_filter_test },
    { "ingress_session", ingress_session_test },
    { "ingress_timer", ingress_timer_test },
    { "audit_writer", audit_writer_test },
    { "audit",       audit_test },
    { "cache_entry", cache_entry_test },
    { "cache_l1",    cache_l1_test },
    { "cache_l2",    cache_l2_test },
    { "cache_flight", cache_flight_test },
    { "cache",       cache_test },
    { "ctl_http",    ctl_http_test },
    { "ctl_api",     ctl_api_test },
    { "ctl_audit",   ctl_audit_test },
    { "ctl_export",  ctl_export_test },
    { "ingress_listen", ingress_listen_test },
    { "router_keys", router_keys_test },
    { "router_load", router_load_test },
    { "router_peers", router_peers_test },
    { "router_policy", router_policy_test },
    { "router_quota", router_quota_test },
    { "router_lease", router_lease_test },
    { "router_registry", router_registry_test },
    { "router_connectors", router_connectors_test },
    { "router_filters", router_filters_test },
    { "router_history", router_history_test },
    { "router_store", router_store_test },
    { "router_session", router_session_test },
    { "router_takeover", router_takeover_test },
    { "router_cache", router_cache_test },
    { "router_faq",  router_faq_test },
    { "router",      router_test },
};

int
main (int argc, char *argv [])
{
    mesh_log_init ("selftest");
    //  Selftests provoke warnings on purpose; show them only when asked
    if (!getenv ("SELFTEST_VERBOSE"))
        mesh_log_set_level (MESH_LOG_FATAL);
    const char *only = argc > 1 ? argv [1] : NULL;
    bool verbose = getenv ("SELFTEST_VERBOSE") != NULL;
    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof s_tests / sizeof s_tests [0]; i++) {
        if (only && !strstr (s_tests [i].name, only))
            continue;
        printf (" * %s\n", s_tests [i].name);
        fflush (stdout);
        pid_t pid = fork ();
        if (pid == 0) {
            s_tests [i].fn (verbose);
            _exit (0);
        }
        int status = 0;
        waitpid (pid, &status, 0);
        if (WIFEXITED (status) && WEXITSTATUS (status) == 0)
            passed++;
        else {
            printf ("   FAILED: %s\n", s_tests [i].name);
            failed++;
        }
    }
    printf ("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
