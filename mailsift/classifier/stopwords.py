"""Function words: pronouns, articles, auxiliaries, prepositions and conjunctions.

They say how a text is written (the register of a marketing mail or of a technical
discussion, the language), not what it is about, and their spam weights are those of the
training mail's era and sites: trained on the 2002 SpamAssassin corpus, ``you``, ``your``,
``our`` and ``we`` were the strongest spam evidence on later newsletters, and ``the`` the
strongest ham evidence on Spanish spam. Such words are not body or subject tokens on their
own, and a bigram of two of them is dropped too (see :mod:`mailsift.classifier.features`);
a bigram that pairs one with a content word (``your_account``) stays. SpamAssassin's Bayes
drops such words likewise (``bayes_stopword_*``).

Content words that other lists count as stop words (``bill``, ``call``, ``free``,
``interest``, ``system``) are deliberately not here.
"""

from __future__ import annotations

_ENGLISH = """
a about above after again against all am an and any are aren't as at be because been before
being below between both but by can can't cannot could couldn't did didn't do does doesn't
doing don't down during each either few for from further had hadn't has hasn't have haven't
having he he'd he'll he's her here here's hers herself him himself his how how's i i'd i'll
i'm i've if in into is isn't it it's its itself let's me more most mustn't my myself no nor
not of off on once only or other ought our ours ourselves out over own same shan't she she'd
she'll she's should shouldn't so some such than that that's the their theirs them themselves
then there there's these they they'd they'll they're they've this those through to too under
until up upon us very was wasn't we we'd we'll we're we've were weren't what what's when
when's where where's which while who who's whom why why's will with won't would wouldn't you
you'd you'll you're you've your yours yourself yourselves also just may might must shall
within without yet via per its
"""

_SPANISH = """
el la los las un una unos unas y o u e ni que de del al a en con por para sin sobre entre
hasta desde es son fue era ser estar está están he ha han hemos yo tú él ella nosotros
vosotros ellos ellas mi mis tu tus su sus nuestro nuestra nuestros nuestras lo le les se me
te nos os este esta estos estas ese esa esos esas como más pero muy ya también porque cuando
donde
"""

_FRENCH = """
le la les un une des et ou de du au aux en dans par pour sur avec sans sous est sont été être
avoir ai as avons avez ont je tu il elle nous vous ils elles mon ma mes ton ta tes son sa ses
notre nos votre vos leur leurs ce cet cette ces qui que quoi dont où ne pas plus mais très
aussi comme se si y
"""

_GERMAN = """
der die das den dem des ein eine einer eines einem einen und oder aber nicht in im an am auf
aus bei mit nach von vor zu zum zur für über unter durch ist sind war waren sein bin bist
hat haben habe hatte ich du er sie es wir ihr mein meine dein deine sein seine unser unsere
euer eure ihre dass wie wenn als auch noch nur so sich
"""

_PORTUGUESE_ITALIAN_DUTCH = """
o os um uma uns umas da das do dos na nas no nos ao aos com não mais mas seu sua seus suas
il lo gli uno di della delle dei degli nel nella con non che sono è per una
het een en van op te dat voor met zijn niet ook aan er maar om als bij uit dan wat
"""

STOPWORDS: frozenset[str] = frozenset(
    (_ENGLISH + _SPANISH + _FRENCH + _GERMAN + _PORTUGUESE_ITALIAN_DUTCH).split()
)
