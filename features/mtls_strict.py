from features._mtls import PeerAuthenticationMode


class MtlsStrict(PeerAuthenticationMode):
    id = "mtls-strict"
    title = "mTLS STRICT"
    category = "security"
    mode = "STRICT"
    depends_on = ("mtls-permissive",)
    problem = ("Are all callers of these workloads in the mesh, so that only mutually authenticated, encrypted "
               "traffic may reach them?")
    pitfalls = (
        "Callers without a sidecar (other namespaces, jobs, the kubelet's probes if not rewritten) are refused.",
        "A DestinationRule with tls.mode DISABLE for these hosts makes clients send plaintext, which STRICT refuses.",
        "Go namespace by namespace, then mesh-wide; keep the rollback (PERMISSIVE) ready.",
    )
    docs = "https://istio.io/latest/docs/tasks/security/authentication/mtls-migration/"


FEATURE = MtlsStrict()
