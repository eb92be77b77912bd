package org.shoprank.devnode;

import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;

/**
 * A single OpenSearch node whose plugins come from the classpath, for development and tests.
 *
 * <p>Usage: {@code DevNode HOME}. Settings are read from {@code HOME/config/opensearch.yml}
 * and logging from {@code HOME/config/log4j2.properties}, both written by the Python launcher
 * ({@code indexer/stores/opensearch/devnode.py}). The node runs until the process gets SIGTERM
 * or SIGINT; a shutdown hook then closes it cleanly.
 */
public final class DevNode extends Node {

    /** The plugins a distribution ships as modules (netty4, analysis-common, painless) plus k-NN. */
    static final List<String> PLUGIN_CLASSES = List.of(
        "org.opensearch.transport.Netty4Plugin",
        "org.opensearch.analysis.common.CommonAnalysisPlugin",
        "org.opensearch.painless.PainlessPlugin",
        "org.opensearch.knn.plugin.KNNPlugin"
    );

    private DevNode(Environment environment, Collection<Class<? extends Plugin>> plugins) {
        super(environment, plugins, true);
    }

    /**
     * The classpath plugins: {@link #PLUGIN_CLASSES}, or the comma-separated class names of the
     * system property {@code shoprank.devnode.plugins} (empty: none, when every plugin and
     * module is a bundle under {@code HOME/modules} and {@code HOME/plugins}, as in a
     * distribution).
     */
    private static List<Class<? extends Plugin>> pluginClasses() throws ClassNotFoundException {
        String spec = System.getProperty("shoprank.devnode.plugins");
        List<String> names = spec == null ? PLUGIN_CLASSES : List.of(spec.split(","));
        List<Class<? extends Plugin>> classes = new ArrayList<>();
        for (String raw : names) {
            String name = raw.strip();
            if (name.isEmpty()) {
                continue;
            }
            classes.add(Class.forName(name).asSubclass(Plugin.class));
        }
        return classes;
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: DevNode HOME  (settings in HOME/config/opensearch.yml)");
            System.exit(2);
        }
        Path home = Paths.get(args[0]).toAbsolutePath();
        Settings input = Settings.builder().put("path.home", home.toString()).build();
        Environment environment = InternalSettingsPreparer.prepareEnvironment(
            input, Map.of(), home.resolve("config"), () -> "shoprank-dev"
        );
        LogConfigurator.registerErrorListener();
        LogConfigurator.configure(environment);

        DevNode node = new DevNode(environment, pluginClasses());
        CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(20, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                closed.countDown();
            }
        }, "devnode-shutdown"));
        node.start();
        closed.await();
    }
}
