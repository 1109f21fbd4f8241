import NIOCore
import NIOPosix
import NIOSSL

extension ClientTLSConfiguration {
    /// The server-side TLS context: the certificate chain and key, and client verification against the CA.
    ///
    /// - Throws: ``SupervisorError`` naming the file that cannot be loaded.
    func makeContext() throws -> NIOSSLContext {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificatePath)
        } catch {
            throw SupervisorError(.rejected, "cannot load the TLS certificate \(certificatePath) (--tls-cert, PEM): \(error)")
        }
        guard !chain.isEmpty else {
            throw SupervisorError(.rejected, "the TLS certificate file \(certificatePath) (--tls-cert) holds no certificate")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        } catch {
            throw SupervisorError(.rejected, "cannot load the TLS private key \(keyPath) (--tls-key, PEM): \(error)")
        }
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        if let ca = caCertificatePath {
            let roots: [NIOSSLCertificate]
            do {
                roots = try NIOSSLCertificate.fromPEMFile(ca)
            } catch {
                throw SupervisorError(.rejected, "cannot load the CA certificates \(ca) (--tls-ca-cert, PEM): \(error)")
            }
            tls.trustRoots = .certificates(roots)
        }
        switch clientAuthentication {
        case .yes:
            guard caCertificatePath != nil else {
                throw SupervisorError(.rejected, "--tls-auth-clients yes needs --tls-ca-cert to verify client certificates against")
            }
            tls.certificateVerification = .noHostnameVerification
        case .optional:
            tls.certificateVerification = caCertificatePath == nil ? .none : .optionalVerification
        case .no:
            tls.certificateVerification = .none
        }
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw SupervisorError(.rejected, "cannot set up TLS with \(certificatePath) and \(keyPath): \(error)")
        }
    }
}

extension SupervisorCore {
    /// The bound TLS client address, if TLS is on.
    var tlsAddress: ListenAddress? {
        guard let tls = configuration.tls else { return nil }
        return ListenAddress(host: tls.listen.host, port: tlsListener?.localAddress?.port ?? tls.listen.port)
    }

    /// Starts the TLS client listener (`--tls-port`): the same front-end (RESP or HTTP) behind a TLS handler.
    func startTLSListener() -> EventLoopFuture<Void> {
        guard let tls = configuration.tls else { return loop.makeSucceededVoidFuture() }
        let context: NIOSSLContext
        do {
            context = try tls.makeContext()
        } catch {
            return loop.makeFailedFuture(error)
        }
        let core = NIOLoopBound(self, eventLoop: loop)
        return ServerBootstrap(group: loop)
            .serverChannelOption(.backlog, value: 512)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            // Clients take turns in small slices, as on the plain listener.
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 4096, maximum: 16384))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    try core.value.initializeClientChannel(channel)
                }
            }
            .bind(host: tls.listen.host, port: tls.listen.port)
            .assumeIsolated()
            .map { self.tlsListener = $0 }
            .flatMapErrorThrowing { error in
                throw SupervisorError(.bindFailed, "cannot listen for TLS clients on \(tls.listen): \(error)")
            }
            .nonisolated()
    }
}
