/*  ingress_admin: the admin port (/healthz, /readyz, /metrics) served by
    lws on its own vhost, answered by the shared mesh_admin.
    lws service thread only.                                                 */
#include "ingress.h"
#include "ingress_guard.h"
#include "mesh_util.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    mesh_admin_response_t response;
    bool ready;                 //  a response is waiting to be written
} admin_pss_t;

static unsigned char s_wbuf [LWS_PRE + 512];

static int
s_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    admin_pss_t *pss = user;
    ingress_t *self = lws_context_user (lws_get_context (wsi));
    switch (reason) {
        case LWS_CALLBACK_HTTP: {
            char *uri = NULL;
            int uri_len = 0;
            int method = lws_http_get_uri_and_method (wsi, &uri, &uri_len);
            const char *name = method == LWSHUMETH_GET ? "GET" : method == LWSHUMETH_HEAD ? "HEAD"
                             : method == LWSHUMETH_POST ? "POST" : "OTHER";
            mesh_admin_request_t request = {
                .method = name, .method_len = strlen (name),
                .path = uri ? uri : (const char *) in, .path_len = uri ? (size_t) uri_len : strlen (in),
                .query = "", .body = ""
            };
            mesh_admin_handle (self->admin, &request, &pss->response);
            pss->ready = true;
            lws_callback_on_writable (wsi);
            return 0;
        }
        case LWS_CALLBACK_HTTP_WRITEABLE: {
            if (!pss->ready)
                return 0;
            pss->ready = false;
            unsigned char *start = s_wbuf + LWS_PRE, *p = start, *end = s_wbuf + sizeof s_wbuf - 1;
            size_t size = mesh_buf_size (&pss->response.body);
            if (lws_add_http_common_headers (wsi, (unsigned int) pss->response.status,
                                             pss->response.content_type, size, &p, end)
            ||  lws_finalize_write_http_header (wsi, start, &p, end)) {
                mesh_buf_free (&pss->response.body);
                return -1;
            }
            //  lws_write needs LWS_PRE bytes of room before the data
            size_t total = LWS_PRE + size;
            unsigned char *body = malloc (total);
            if (!body) {
                mesh_buf_free (&pss->response.body);
                return -1;
            }
            memcpy (body + LWS_PRE, mesh_buf_head (&pss->response.body), size);
            int written = lws_write (wsi, body + LWS_PRE, size, LWS_WRITE_HTTP_FINAL);
            free (body);
            mesh_buf_free (&pss->response.body);
            if (written < (int) size)
                return -1;
            return lws_http_transaction_completed (wsi) ? -1 : 0;
        }
        case LWS_CALLBACK_CLOSED_HTTP:
            //  A connection closed before it sent a request (a TCP probe,
            //  a scraper's idle connection) has no session data
            if (pss)
                mesh_buf_free (&pss->response.body);
            return 0;
        case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
            //  A few scrapers and probes at once; more is a flood
            return ingress_guard_connect (self->admin_guard, wsi, "") == INGRESS_GUARD_OK ? 0 : -1;
        case LWS_CALLBACK_WSI_DESTROY:
            ingress_guard_disconnect (self->admin_guard, wsi);
            return 0;
        default:
            return lws_callback_http_dummy (wsi, reason, user, in, len);
    }
}

const struct lws_protocols ingress_admin_protocol = {
    "admin", s_callback, sizeof (admin_pss_t), 0, 0, NULL, 0
};
